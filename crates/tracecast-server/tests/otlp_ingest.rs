//! OTLP ingest (`POST /v1/traces`): the real server, real receivers on loopback. The round trip
//! feeds what the webhook exporter delivered back in; bad input gets OTLP's own answers
//! (`google.rpc.Status` in the request's encoding, `partial_success`), with nothing half-written.

#![recursion_limit = "256"]

mod common;

use std::io::Write;

use common::TestServer;
use common::e2e::{create, fast};
use common::receiver::{Receiver, int_attr, string_attr};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Value, json};
use tracecast_model::generation::{Generation, IngestContext};

const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const PARENT_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}
fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}
fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

/// A chat span as the GenAI semantic conventions (current form) describe it.
fn genai_span(span_id: u8, model: &str) -> Span {
    Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: vec![0x10, 0, 0, 0, 0, 0, 0, span_id],
        parent_span_id: PARENT_ID.to_vec(),
        name: format!("chat {model}"),
        kind: 3,
        start_time_unix_nano: 1_788_000_000_000_000_000,
        end_time_unix_nano: 1_788_000_000_250_000_000,
        attributes: vec![
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.provider.name", "openai"),
            s("gen_ai.request.model", model),
            s("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
            s("gen_ai.response.id", "chatcmpl-1"),
            i("gen_ai.usage.input_tokens", 11),
            i("gen_ai.usage.output_tokens", 7),
            i("gen_ai.usage.cache_read.input_tokens", 3),
            s(
                "gen_ai.input.messages",
                r#"[{"role":"user","parts":[{"type":"text","content":"OTLP-PROMPT"}]}]"#,
            ),
            s(
                "gen_ai.output.messages",
                r#"[{"role":"assistant","parts":[{"type":"text","content":"OTLP-ANSWER"}],"finish_reason":"stop"}]"#,
            ),
        ],
        ..Default::default()
    }
}

/// An HTTP server span: not an LLM call.
fn http_span() -> Span {
    Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: PARENT_ID.to_vec(),
        name: "GET /chat".into(),
        kind: 2,
        start_time_unix_nano: 1_788_000_000_000_000_000,
        end_time_unix_nano: 1_788_000_000_300_000_000,
        attributes: vec![s("http.request.method", "GET")],
        ..Default::default()
    }
}

fn export(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![s("service.name", "chat-app")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

async fn post_traces(
    srv: &TestServer,
    key: Option<&str>,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut req = srv
        .http
        .post(format!("{}/v1/traces", srv.base))
        .header("content-type", content_type)
        .body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let r = req.send().await.unwrap();
    Answer {
        status: r.status().as_u16(),
        content_type: r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

/// A `google.rpc.Status` (code 1, message 2) decoded by hand: the two fields OTLP uses.
fn proto_status(body: &[u8]) -> (i32, String) {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Status {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let s = Status::decode(body).expect("a google.rpc.Status");
    (s.code, s.message)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// The generation as stored, without the identity the receiving key sets.
/// Sends a marker generation through JSON ingest and waits for the webhook to deliver it: what
/// the webhook received by then (sorted, the marker included) is everything written before.
async fn delivered_up_to_a_marker(srv: &TestServer, key: &str, hook: &Receiver) -> Vec<String> {
    let marker = srv
        .http
        .post(format!("{}/api/v1/generations", srv.base))
        .bearer_auth(key)
        .json(&json!({"id": "marker", "model": "m", "created_at": "2026-09-05T08:24:27Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(marker.status(), 202);
    hook.wait(10, "the marker", |r| {
        r.generation_ids().contains(&"marker".to_string())
    })
    .await;
    let mut ids = hook.generation_ids();
    ids.sort();
    ids
}

fn comparable(g: &Generation) -> Value {
    let mut v = serde_json::to_value(g).unwrap();
    v.as_object_mut().unwrap().remove("identity");
    v
}

#[tokio::test]
async fn webhook_output_fed_back_is_the_same_generation() {
    let srv = TestServer::start_with(fast).await;
    let (key, _) = srv.workspace_key(None).await;
    let hook = Receiver::start().await;
    create(&srv, "webhook", "all-groups", json!({"url": hook.url}), json!({"broadcast_generation_identity": true, "broadcast_generation_cost": true, "broadcast_generation_request_context": true})).await;

    // docs/generation.md's two examples, less what OTLP does not carry (see docs/otlp-ingest.md):
    // request.model, request.stream and response.id.
    let full = json!({
        "id": "gen-1751234567-AbCdEfGhIjKlMnOp", "model": "openai/gpt-4o",
        "created_at": "2026-09-05T08:24:27.107Z", "provider_name": "OpenAI", "api_type": "completions",
        "streamed": true, "cancelled": false, "finish_reason": "stop", "native_finish_reason": "stop",
        "latency": 1840.5, "generation_time": 1622, "moderation_latency": 12, "time_to_first_token": 310,
        "usage": {"prompt_tokens": 52, "completion_tokens": 18, "total_tokens": 70,
            "prompt_tokens_details": {"cached_tokens": 32, "cache_write_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
            "cost_details": {"prompt_cost": 0.00008, "completion_cost": 0.00018}},
        "total_cost": 0.00026, "upstream_inference_cost": 0.00026, "cache_discount": 0.00004, "is_byok": false,
        "user": "user-4821", "session_id": "chat-2026-09-05-7f3a",
        "trace": {"trace_id": "support-ticket-1182", "trace_name": "Support answer", "span_name": "Draft reply",
            "generation_name": "Summarize ticket", "parent_span_id": "00f067aa0ba902b7",
            "environment": "production", "ticket_priority": 2, "labels": {"team": "billing"}},
        "external_user": "acme-customer-991",
        "request": {"messages": [
            {"role": "system", "content": "You answer support tickets in two sentences."},
            {"role": "user", "content": [{"type": "text", "text": "The export button does nothing."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}],
            "temperature": 0.2, "max_tokens": 200, "stop": "END",
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]},
        "response": {"model": "openai/gpt-4o-2024-08-06", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Sorry about that!", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}]}}]},
        "http_referer": "https://support.acme.example", "x_title": "Acme Support", "user_agent": "acme-gateway/1.4",
        "origin": "https://support.acme.example", "request_id": "req_01J8ZK3V6Q", "upstream_id": "chatcmpl-9xYz",
        "data_region": "global"
    });
    let failed = json!({
        "id": "gen-1751234999-QrStUvWxYz", "model": "anthropic/claude-sonnet-4",
        "created_at": "2026-09-05T08:25:02Z", "provider_name": "Anthropic", "latency": 30012,
        "finish_reason": "error", "error": {"code": 529, "message": "Overloaded"},
        "request": {"messages": [{"role": "user", "content": "Summarize this contract."}]},
        "session_id": "chat-2026-09-05-7f3a", "data_region": "global"
    });
    let r = srv
        .http
        .post(format!("{}/api/v1/generations", srv.base))
        .bearer_auth(&key)
        .json(&json!([full, failed]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    hook.wait(10, "both generations", |r| r.generation_ids().len() == 2)
        .await;
    let delivered: Vec<Vec<u8>> = hook
        .requests()
        .into_iter()
        .map(|c| c.body.to_vec())
        .collect();

    // Field for field, through the receiver's own mapping.
    let ctx = IngestContext::default();
    let originals: Vec<Value> = [&full, &failed]
        .iter()
        .map(|v| comparable(&Generation::from_json((*v).clone(), &ctx).unwrap()))
        .collect();
    let mut back = Vec::new();
    for body in &delivered {
        let req: ExportTraceServiceRequest = serde_json::from_slice(body).unwrap();
        let batch = tracecast_server::ingest::otlp::mapping::map_request(&req).unwrap();
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        back.extend(batch.records.iter().map(|r| comparable(&r.generation)));
    }
    back.sort_by_key(|v| v["id"].as_str().unwrap().to_string());
    assert_eq!(back.len(), 2);
    assert_eq!(back[0], originals[0], "the full example");
    assert_eq!(back[1], originals[1], "the failed call");

    // And end to end: into a second workspace, whose webhook receives the same spans.
    let ws = srv
        .post(
            "/api/v1/workspaces",
            json!({"name": "Replay", "slug": "replay"}),
        )
        .await;
    let ws_id = ws.body["data"]["id"].as_str().unwrap().to_string();
    let (key_b, _) = srv.workspace_key(Some(&ws_id)).await;
    let hook_b = Receiver::start().await;
    create(&srv, "webhook", "replayed", json!({"url": hook_b.url}), json!({"workspace_id": ws_id, "broadcast_generation_cost": true, "broadcast_generation_request_context": true})).await;
    for body in delivered {
        let a = post_traces(&srv, Some(&key_b), "application/json", None, body).await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let answer: Value = serde_json::from_slice(&a.body).unwrap();
        assert!(
            answer
                .get("partialSuccess")
                .is_none_or(|p| p["rejectedSpans"] == 0 || p["rejectedSpans"] == "0"),
            "{answer}"
        );
    }
    hook_b
        .wait(10, "both generations again", |r| {
            r.generation_ids().len() == 2
        })
        .await;
    let first = hook.spans();
    let second = hook_b.spans();
    for span in &second {
        let twin = first
            .iter()
            .find(|f| f.span_id == span.span_id)
            .expect("the same span id");
        assert_eq!(twin.trace_id, span.trace_id);
        assert_eq!(twin.parent_span_id, span.parent_span_id);
        assert_eq!(twin.name, span.name);
        let keep = |a: &&KeyValue| {
            !a.key.starts_with("openrouter.api_key")
                && a.key != "openrouter.workspace_id"
                && a.key != "openrouter.external_user"
        };
        let mut x: Vec<&KeyValue> = twin.attributes.iter().filter(keep).collect();
        let mut y: Vec<&KeyValue> = span.attributes.iter().filter(keep).collect();
        x.sort_by(|a, b| a.key.cmp(&b.key));
        y.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(x, y, "span {}", span.name);
    }
}

#[tokio::test]
async fn protobuf_gzip_genai_spans_become_generations() {
    let srv = TestServer::start_with(fast).await;
    let (key, _) = srv.workspace_key(None).await;
    let hook = Receiver::start().await;
    create(&srv, "webhook", "hook", json!({"url": hook.url}), json!({})).await;
    let body = export(vec![http_span(), genai_span(1, "gpt-4o-mini")]).encode_to_vec();
    let a = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        Some("gzip"),
        gzip(&body),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.content_type, "application/x-protobuf");
    let answer = ExportTraceServiceResponse::decode(a.body.as_slice()).unwrap();
    let partial = answer
        .partial_success
        .expect("the skipped span is reported");
    assert_eq!(partial.rejected_spans, 0);
    assert!(
        partial
            .error_message
            .contains("1 span(s) are not LLM calls"),
        "{}",
        partial.error_message
    );

    hook.wait(10, "the generation", |r| r.generation_ids().len() == 1)
        .await;
    let spans = hook.spans();
    let g = spans
        .iter()
        .find(|s| string_attr(s, "openrouter.observation.type").as_deref() == Some("generation"))
        .unwrap();
    let id = format!("otlp-{}-{}", hex::encode(TRACE_ID), "1000000000000001");
    assert_eq!(string_attr(g, "gen_ai.response.id").unwrap(), id);
    assert_eq!(g.trace_id, TRACE_ID.to_vec(), "the app's trace id is kept");
    assert_eq!(
        g.span_id,
        vec![0x10, 0, 0, 0, 0, 0, 0, 1],
        "the app's span id is the generation span's"
    );
    assert_eq!(g.parent_span_id, PARENT_ID.to_vec(), "the parent is kept");
    assert_eq!(
        string_attr(g, "gen_ai.request.model").unwrap(),
        "gpt-4o-mini"
    );
    assert_eq!(int_attr(g, "gen_ai.usage.input_tokens"), Some(11));
    assert_eq!(int_attr(g, "gen_ai.usage.output_tokens"), Some(7));
    assert_eq!(int_attr(g, "gen_ai.usage.cache_read.input_tokens"), Some(3));
    let prompt = string_attr(g, "gen_ai.prompt").unwrap();
    assert!(prompt.contains("OTLP-PROMPT"), "{prompt}");
    let completion = string_attr(g, "gen_ai.completion").unwrap();
    assert!(completion.contains("OTLP-ANSWER"), "{completion}");
    assert_eq!(
        string_attr(g, "gen_ai.response.finish_reason").unwrap(),
        "stop"
    );
    assert_eq!(
        string_attr(g, "trace.metadata.otlp_span_id").unwrap(),
        "1000000000000001"
    );

    // An OTLP retry of the same export is a duplicate: acknowledged, not delivered again.
    let a = post_traces(&srv, Some(&key), "application/x-protobuf", None, body).await;
    assert_eq!(a.status, 200);
    let again = srv
        .http
        .post(format!("{}/api/v1/generations", srv.base))
        .bearer_auth(&key)
        .json(&json!({"id": "after", "model": "m", "created_at": "2026-09-05T08:24:27Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    hook.wait(10, "the later record", |r| {
        r.generation_ids().contains(&"after".to_string())
    })
    .await;
    assert_eq!(
        hook.generation_ids().iter().filter(|g| **g == id).count(),
        1,
        "delivered once"
    );
}

#[tokio::test]
async fn bad_input_gets_otlp_answers_and_nothing_is_written() {
    let srv = TestServer::start_with(fast).await;
    let (key, _) = srv.workspace_key(None).await;
    let hook = Receiver::start().await;
    create(&srv, "webhook", "hook", json!({"url": hook.url}), json!({})).await;

    // Malformed protobuf: 400 with a Status in protobuf.
    let a = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        None,
        vec![0x0a, 0xff, 0xff, 0x01],
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.content_type, "application/x-protobuf");
    let (code, message) = proto_status(&a.body);
    assert_eq!(code, 3, "INVALID_ARGUMENT");
    assert!(message.starts_with("malformed OTLP protobuf"), "{message}");

    // Malformed JSON: 400 with a Status in JSON.
    let a = post_traces(
        &srv,
        Some(&key),
        "application/json",
        None,
        b"{\"resourceSpans\": 7}".to_vec(),
    )
    .await;
    assert_eq!(a.status, 400);
    let st: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(st["code"], 3);
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed OTLP/JSON"),
        "{st}"
    );

    // Wrong content type: 415 naming the accepted ones.
    let a = post_traces(&srv, Some(&key), "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(a.status, 415);
    let st: Value = serde_json::from_slice(&a.body).unwrap();
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("application/x-protobuf or application/json"),
        "{st}"
    );

    // Not gzip although it says so.
    let a = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        Some("gzip"),
        b"plain".to_vec(),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(
        proto_status(&a.body)
            .1
            .starts_with("the gzip body is not valid gzip")
    );

    // No key: 401 with a Status; a wrong key too.
    let body = export(vec![genai_span(2, "gpt-4o")]).encode_to_vec();
    let a = post_traces(&srv, None, "application/x-protobuf", None, body.clone()).await;
    assert_eq!(a.status, 401);
    assert_eq!(proto_status(&a.body).0, 16, "UNAUTHENTICATED");

    // A span with no usable fields: accepted as a request, reported, nothing appended.
    let bare = Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: vec![9; 8],
        start_time_unix_nano: 1,
        ..Default::default()
    };
    let a = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        None,
        export(vec![bare]).encode_to_vec(),
    )
    .await;
    assert_eq!(a.status, 200);
    let p = ExportTraceServiceResponse::decode(a.body.as_slice())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(p.rejected_spans, 0);
    assert!(
        p.error_message.contains("not LLM calls"),
        "{}",
        p.error_message
    );

    // An LLM span without a model is rejected by name; the good span next to it goes through.
    let mut no_model = genai_span(3, "x");
    no_model.attributes.retain(|a| !a.key.ends_with(".model"));
    let a = post_traces(
        &srv,
        Some(&key),
        "application/json",
        None,
        serde_json::to_vec(&export(vec![no_model, genai_span(4, "gpt-4o")])).unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let answer: ExportTraceServiceResponse = serde_json::from_slice(&a.body).unwrap();
    let p = answer.partial_success.unwrap();
    assert_eq!(p.rejected_spans, 1);
    assert!(
        p.error_message.contains("span 1000000000000003") && p.error_message.contains("no model"),
        "{}",
        p.error_message
    );

    // A field the record rejects (a negative token count) names the field.
    let mut negative = genai_span(5, "gpt-4o");
    negative.attributes.push(i("gen_ai.usage.total_tokens", -4));
    negative.attributes.push(s("user.id", &"u".repeat(200)));
    let a = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        None,
        export(vec![negative]).encode_to_vec(),
    )
    .await;
    let p = ExportTraceServiceResponse::decode(a.body.as_slice())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(p.rejected_spans, 1);
    assert!(p.error_message.contains("user"), "{}", p.error_message);

    // 20 MB: 413 before anything is decoded; gzip that inflates past the cap too.
    let big = vec![0u8; 20 * 1024 * 1024];
    let a = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        None,
        big.clone(),
    )
    .await;
    assert_eq!(a.status, 413);
    assert_eq!(proto_status(&a.body).0, 8, "RESOURCE_EXHAUSTED");
    let a = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        Some("gzip"),
        gzip(&big),
    )
    .await;
    assert_eq!(a.status, 413);
    assert!(proto_status(&a.body).1.contains("once inflated"));

    // Only the good span of the mixed export was written.
    let id4 = format!("otlp-{}-1000000000000004", hex::encode(TRACE_ID));
    let ids = delivered_up_to_a_marker(&srv, &key, &hook).await;
    assert_eq!(ids, vec!["marker".to_string(), id4]);
}

/// `[[[...]]]` nested `depth` deep.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn json_in_attributes_keeps_the_ingest_limits() {
    let srv = TestServer::start_with(fast).await;
    let (key, _) = srv.workspace_key(None).await;
    let hook = Receiver::start().await;
    create(&srv, "webhook", "hook", json!({"url": hook.url}), json!({})).await;
    let post = |spans: Vec<Span>| {
        post_traces(
            &srv,
            Some(&key),
            "application/x-protobuf",
            None,
            export(spans).encode_to_vec(),
        )
    };

    // Too deep for a record of /api/v1/generations (64): rejected by name, before parsing,
    // whether the text is a message list or metadata that would land deeper in the record.
    let mut deep = genai_span(1, "gpt-4o");
    deep.attributes.retain(|a| a.key != "gen_ai.input.messages");
    deep.attributes
        .push(s("gen_ai.input.messages", &format!("[{}]", nested(100))));
    let mut deep_meta = genai_span(2, "gpt-4o");
    deep_meta
        .attributes
        .push(s("openinference.span.kind", "LLM"));
    deep_meta.attributes.push(s("llm.model_name", "gpt-4o"));
    deep_meta
        .attributes
        .push(s("metadata", &format!("{{\"a\": {}}}", nested(120))));
    // Within the limit as text, but deeper than 64 once placed in the record.
    let mut edge = genai_span(3, "gpt-4o");
    edge.attributes.push(s("openinference.span.kind", "LLM"));
    edge.attributes.push(s("llm.model_name", "gpt-4o"));
    edge.attributes
        .push(s("metadata", &format!("{{\"a\": {}}}", nested(63))));
    let a = post(vec![deep, deep_meta, edge, genai_span(4, "gpt-4o")]).await;
    assert_eq!(a.status, 200);
    let p = ExportTraceServiceResponse::decode(a.body.as_slice())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(p.rejected_spans, 3, "{}", p.error_message);
    assert!(
        p.error_message
            .contains("gen_ai.input.messages: nests arrays and objects more than 64 deep"),
        "{}",
        p.error_message
    );
    assert!(
        p.error_message
            .contains("metadata: nests arrays and objects more than 64 deep"),
        "{}",
        p.error_message
    );
    assert!(
        p.error_message
            .contains("the record nests arrays and objects 65 deep, at most 64"),
        "{}",
        p.error_message
    );

    // More JSON values than one span may hold (100,000), and more than one export may
    // (400,000): the span is rejected; the export is refused whole, nothing written.
    let many = |n: usize| format!("[{}]", vec!["0"; n].join(","));
    let mut big = genai_span(5, "gpt-4o");
    big.attributes
        .push(s("gen_ai.tool.definitions", &many(100_001)));
    let a = post(vec![big]).await;
    let p = ExportTraceServiceResponse::decode(a.body.as_slice())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(p.rejected_spans, 1);
    assert!(
        p.error_message
            .contains("gen_ai.tool.definitions: the span's JSON attributes hold more than 100000"),
        "{}",
        p.error_message
    );
    let spans: Vec<Span> = (6..11)
        .map(|i| {
            let mut sp = genai_span(i, "gpt-4o");
            sp.attributes
                .push(s("gen_ai.tool.definitions", &many(90_000)));
            sp
        })
        .collect();
    let a = post(spans).await;
    assert_eq!(a.status, 413);
    let (code, message) = proto_status(&a.body);
    assert_eq!(code, 8, "RESOURCE_EXHAUSTED");
    assert!(
        message.contains("more than 400000 JSON values"),
        "{message}"
    );

    // More LLM spans than one request may hold records: refused whole.
    let spans: Vec<Span> = (0..1001)
        .map(|i| {
            let mut sp = genai_span(0, "gpt-4o");
            sp.span_id = vec![0x20, 0, 0, 0, 0, 0, (i >> 8) as u8, i as u8];
            sp
        })
        .collect();
    let a = post(spans).await;
    assert_eq!(a.status, 413);
    assert!(proto_status(&a.body).1.contains("At most 1000 LLM spans"));

    // Only span 4 was written.
    let ids = delivered_up_to_a_marker(&srv, &key, &hook).await;
    let id4 = format!("otlp-{}-1000000000000004", hex::encode(TRACE_ID));
    assert_eq!(ids, vec!["marker".to_string(), id4]);
}

#[tokio::test]
async fn grpc_receiver_is_off_by_default_and_ingests_when_set() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

    assert_eq!(
        tracecast_server::settings::Settings::default().otlp_grpc_listen,
        None,
        "off by default"
    );
    let dir = tempfile::tempdir().unwrap();
    let mgmt = tracecast_model::generate_key();
    let settings = tracecast_server::settings::Settings {
        listen: "127.0.0.1:0".into(),
        otlp_grpc_listen: Some("127.0.0.1:0".into()),
        data_dir: dir.path().to_path_buf(),
        bootstrap_management_key: Some(mgmt.clone()),
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tracecast_server::app::start(&settings, async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let hook = Receiver::start().await;
    let r = http
        .post(format!("{base}/api/v1/observability/destinations"))
        .bearer_auth(&mgmt)
        .json(&json!({"type": "webhook", "name": "hook", "config": {"url": hook.url}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key: Value = http
        .post(format!("{base}/api/v1/keys"))
        .bearer_auth(&mgmt)
        .json(&json!({"name": "grpc-app"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_string();

    let grpc = format!(
        "http://{}",
        running.otlp_grpc_addr.expect("the gRPC address")
    );
    let mut client = TraceServiceClient::connect(grpc).await.unwrap();

    // No key: UNAUTHENTICATED.
    let err = client
        .export(export(vec![genai_span(6, "gpt-4o")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // With the key: the LLM span is ingested, the HTTP span reported as skipped.
    let mut req = tonic::Request::new(export(vec![http_span(), genai_span(6, "gpt-4o")]));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let answer = client.export(req).await.unwrap().into_inner();
    let p = answer.partial_success.unwrap();
    assert_eq!(p.rejected_spans, 0);
    assert!(
        p.error_message.contains("not LLM calls"),
        "{}",
        p.error_message
    );
    hook.wait(10, "the gRPC generation", |r| r.generation_ids().len() == 1)
        .await;
    let spans = hook.spans();
    let g = spans
        .iter()
        .find(|s| string_attr(s, "gen_ai.request.model").is_some())
        .unwrap();
    assert_eq!(g.trace_id, TRACE_ID.to_vec());
    assert_eq!(int_attr(g, "gen_ai.usage.input_tokens"), Some(11));
    drop(tx);
    running.task.await.unwrap().unwrap();
}
