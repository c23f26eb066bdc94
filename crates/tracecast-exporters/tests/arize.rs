//! The `arize` destination against a loopback receiver playing Arize AX's OTLP endpoint.
//! Bodies are binary protobuf, decoded with opentelemetry-proto's message types; attribute
//! names are OpenInference's (checked against the `openinference-semantic-conventions` package
//! by `tests/vendors/test_arize.py` on the golden file).

mod common;
use common::golden;
use common::setup::ctx;

use std::time::Duration;

use common::*;
use prost::Message;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracecast_exporters::arize::{DEFAULT_BASE_URL, exporter};
use tracecast_exporters::otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use tracecast_exporters::{Exporter, Outcome};
use tracecast_model::trace::{TraceOptions, TraceView};

const API_KEY: &str = "ak-2d8257ec-arize-api-key";
const SPACE: &str = "U3BhY2U6MzA1ODc6NU1udA==";
const PROJECT: &str = "order-agent";

fn config(base: &str, extra: Value) -> serde_json::Map<String, Value> {
    let mut cfg =
        json!({"apiKey": API_KEY, "spaceKey": SPACE, "modelId": PROJECT, "baseUrl": base});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        cfg[k] = v;
    }
    cfg.as_object().cloned().unwrap()
}

fn arize(base: &str, extra: Value) -> Box<dyn Exporter> {
    match exporter(&config(base, extra), &ctx()) {
        Ok(e) => Box::new(e),
        Err(e) => panic!("arize exporter: {e}"),
    }
}

/// The credential headers of Arize's OTel client (`arize-otel` 0.13.0,
/// `src/arize/otel/otel.py`, `_get_arize_auth_headers`): `authorization` (the API key as is),
/// `arize-space-id` and `arize-interface: otel`; not the deprecated `space_id` / `api_key`, whose
/// underscores proxies drop (nginx's `underscores_in_headers off`).
fn assert_arize_otel_headers(req: &Captured) {
    assert_eq!(req.header("authorization"), Some(API_KEY));
    assert_eq!(req.header("arize-space-id"), Some(SPACE));
    assert_eq!(req.header("arize-interface"), Some("otel"));
    for name in req.headers.keys() {
        assert!(
            !name.as_str().contains('_'),
            "header {name} has an underscore"
        );
    }
}

fn decode_pb(body: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(body).expect("a binary protobuf ExportTraceServiceRequest")
}

fn sha_prefix(s: &str, n: usize) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..n])
}

fn json_attr(attrs: &[tracecast_exporters::otlp::proto::common::v1::KeyValue], key: &str) -> Value {
    serde_json::from_str(s(attrs, key)).unwrap_or_else(|e| panic!("{key} is not JSON: {e}"))
}

async fn send_one(
    rx: &Receiver,
    exporter: &dyn Exporter,
    v: Value,
    opts: TraceOptions,
) -> ExportTraceServiceRequest {
    let g = generation(v);
    let p = exporter.encode(&[TraceView::new(&g, opts)]).unwrap();
    assert_eq!(exporter.send(&p).await, Outcome::Delivered);
    decode_pb(&rx.next().await.body)
}

#[tokio::test]
async fn posts_protobuf_with_arize_otel_headers_and_openinference_attributes() {
    let rx = Receiver::start().await;
    let exporter = arize(&rx.url(""), json!({"headers": {"X-Env": "staging"}}));
    let g = generation(full_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(payload.content_type, "application/x-protobuf");
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);

    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/traces");
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert_arize_otel_headers(&req);
    assert_eq!(req.header("x-env"), Some("staging"));
    let decoded = decode_pb(&req.body);

    // The project.
    let res = &decoded.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(s(res, "openinference.project.name"), PROJECT);
    assert_eq!(s(res, "model_id"), PROJECT);
    assert_eq!(s(res, "service.name"), "openrouter");
    assert_eq!(s(res, "openrouter.trace.id"), "order_processing_001");

    // The "Supported Metadata Keys" table of arize.mdx.
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 2);
    let (inter, gen_span) = (sp[0], sp[1]);
    let trace_id = sha_prefix("order_processing_001", 16);
    assert_eq!(
        hex::encode(&inter.trace_id),
        trace_id,
        "trace_id -> Trace ID"
    );
    assert_eq!(hex::encode(&gen_span.trace_id), trace_id);
    assert_eq!(inter.name, "Extraction", "span_name -> Span Name");
    assert_eq!(
        gen_span.name, "Extract Order Details",
        "generation_name -> Span Name"
    );
    // The parent cannot name a span of this trace (its id is derived from a name), so it is
    // not the OTLP parent (Arize would show an orphan): the span is a root and carries it.
    assert!(
        inter.parent_span_id.is_empty(),
        "an unsent parent leaves a root"
    );
    assert_eq!(
        s(&inter.attributes, "openrouter.trace.parent_span_id"),
        "00f067aa0ba902b7",
        "parent_span_id -> openrouter.trace.parent_span_id"
    );
    assert_eq!(gen_span.parent_span_id, inter.span_id);
    assert_eq!(
        s(&inter.attributes, "openrouter.trace.name"),
        "Order Processing Pipeline",
        "trace_name"
    );
    assert_eq!(s(&inter.attributes, "openinference.span.kind"), "CHAIN");

    // OpenInference attributes of the LLM span.
    let a = &gen_span.attributes;
    assert_eq!(s(a, "openinference.span.kind"), "LLM");
    assert_eq!(s(a, "llm.model_name"), "openai/gpt-4o");
    assert_eq!(s(a, "llm.provider"), "openai");
    assert_eq!(s(a, "llm.system"), "openai");
    assert_eq!(i(a, "llm.token_count.prompt"), 120);
    assert_eq!(i(a, "llm.token_count.completion"), 30);
    assert_eq!(i(a, "llm.token_count.total"), 150);
    assert_eq!(i(a, "llm.token_count.prompt_details.cache_read"), 100);
    assert_eq!(i(a, "llm.token_count.prompt_details.cache_write"), 4);
    assert_eq!(i(a, "llm.token_count.prompt_details.audio"), 1);
    assert_eq!(i(a, "llm.token_count.completion_details.reasoning"), 8);
    assert_eq!(i(a, "llm.token_count.completion_details.audio"), 2);
    assert_eq!(d(a, "llm.cost.total"), 0.00123);
    assert!(
        !has(a, "llm.cost.prompt"),
        "cost allocation is an opt-in group"
    );
    assert_eq!(s(a, "llm.finish_reason"), "tool_calls");
    assert_eq!(
        json_attr(a, "llm.invocation_parameters"),
        json!({"max_tokens": 256, "n": 1, "seed": 7, "stop": "END", "temperature": 0.2, "top_p": 0.9})
    );
    // User, session, custom metadata (metadata.* per arize.mdx, and OpenInference's JSON).
    assert_eq!(s(a, "user.id"), "user_12345");
    assert_eq!(s(a, "session.id"), "session_abc");
    assert_eq!(
        json_attr(a, "metadata"),
        json!({"attempt": 2, "customer": {"tier": "gold"}, "labels": ["a", "b"], "order_id": "ORD-12345", "priority": "high", "score": 0.75, "vip": true})
    );
    assert_eq!(s(a, "metadata.order_id"), "ORD-12345");
    assert_eq!(i(a, "metadata.attempt"), 2);
    assert!(b(a, "metadata.vip"));
    assert!(!a.iter().any(|kv| kv.key.starts_with("trace.metadata.")));
    assert!(!has(a, "tag.tags"), "no tags in this record");
    // Content.
    assert_eq!(
        json_attr(a, "input.value"),
        json!({"messages": [
            {"role": "system", "content": "You extract orders."},
            {"role": "user", "content": "Process this order: 2 widgets"}
        ]})
    );
    assert_eq!(s(a, "input.mime_type"), "application/json");
    assert_eq!(s(a, "llm.input_messages.0.message.role"), "system");
    assert_eq!(
        s(a, "llm.input_messages.0.message.content"),
        "You extract orders."
    );
    assert_eq!(s(a, "llm.input_messages.1.message.role"), "user");
    assert_eq!(
        s(a, "llm.input_messages.1.message.content"),
        "Process this order: 2 widgets"
    );
    assert_eq!(
        json_attr(a, "llm.tools.0.tool.json_schema"),
        json!({"type": "function", "function": {"name": "lookup_sku", "parameters": {"type": "object"}}})
    );
    assert_eq!(s(a, "output.value"), "Looking up the SKU.");
    assert_eq!(s(a, "output.mime_type"), "text/plain");
    assert_eq!(s(a, "llm.output_messages.0.message.role"), "assistant");
    assert_eq!(
        s(a, "llm.output_messages.0.message.content"),
        "Looking up the SKU."
    );
    let call = "llm.output_messages.0.message.tool_calls.0.tool_call.";
    assert_eq!(s(a, &format!("{call}id")), "call_1");
    assert_eq!(s(a, &format!("{call}function.name")), "lookup_sku");
    assert_eq!(
        s(a, &format!("{call}function.arguments")),
        r#"{"name":"widget"}"#
    );
    // The GenAI content attributes are replaced by OpenInference's.
    for key in [
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.tool.definitions",
    ] {
        assert!(!has(a, key), "{key} is not sent to Arize");
    }
    assert_eq!(s(a, "gen_ai.request.model"), "openai/gpt-4o");

    // The golden file: the decoded request as OTLP/JSON. Regenerate with UPDATE_GOLDEN=1 and
    // review the diff.
    let now = serde_json::to_string_pretty(&decoded).unwrap() + "\n";
    let golden = golden::assert_text("arize.json", "Arize request", &now);
    let back: ExportTraceServiceRequest = serde_json::from_str(&golden).unwrap();
    assert_eq!(back, decoded);
}

#[tokio::test]
async fn messages_with_parts_tools_tags_and_cost_allocation() {
    let rx = Receiver::start().await;
    let exporter = arize(&rx.url("/v1"), json!({}));
    let record = json!({
        "id": "gen-parts",
        "model": "google/gemini-2.5-pro",
        "provider_name": "Google Vertex",
        "created_at": "2026-01-01T00:00:00Z",
        "total_cost": 0.003,
        "trace": {"trace_name": "Classify", "tags": ["beta", "eu"], "dataset": "customer_feedback"},
        "request": {"messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "describe", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c9", "name": "describe", "content": "a cat"}
        ]},
        "response": {"choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "content": "", "tool_calls": [{"id": "c10", "type": "function", "function": {"name": "save", "arguments": "{\"tag\":\"cat\"}"}}]}}]},
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost_details": {"prompt_cost": 0.001, "completion_cost": 0.002}}
    });
    let opts = TraceOptions {
        cost_allocation: true,
        ..Default::default()
    };
    let decoded = send_one(&rx, exporter.as_ref(), record, opts).await;
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 1);
    assert_eq!(
        sp[0].name, "Classify",
        "a root generation is named by trace_name"
    );
    let a = &sp[0].attributes;
    assert_eq!(s(a, "llm.provider"), "google");
    assert!(!has(a, "llm.system"));
    assert_eq!(strings(a, "tag.tags"), vec!["beta", "eu"]);
    assert_eq!(s(a, "metadata.dataset"), "customer_feedback");
    assert_eq!(d(a, "llm.cost.prompt"), 0.001);
    assert_eq!(d(a, "llm.cost.completion"), 0.002);
    let m0 = "llm.input_messages.0.message.";
    assert_eq!(
        s(a, &format!("{m0}contents.0.message_content.type")),
        "text"
    );
    assert_eq!(
        s(a, &format!("{m0}contents.0.message_content.text")),
        "What is in this image?"
    );
    // Ingest keeps no image data: the part arrives as text.
    assert_eq!(
        s(a, &format!("{m0}contents.1.message_content.type")),
        "text"
    );
    assert_eq!(
        s(a, &format!("{m0}contents.1.message_content.text")),
        "[image omitted]"
    );
    assert!(!has(a, &format!("{m0}content")));
    let m1 = "llm.input_messages.1.message.";
    assert_eq!(
        s(a, &format!("{m1}tool_calls.0.tool_call.function.name")),
        "describe"
    );
    assert_eq!(s(a, &format!("{m1}tool_calls.0.tool_call.id")), "c9");
    let m2 = "llm.input_messages.2.message.";
    assert_eq!(s(a, &format!("{m2}role")), "tool");
    assert_eq!(s(a, &format!("{m2}tool_call_id")), "c9");
    assert_eq!(s(a, &format!("{m2}name")), "describe");
    assert_eq!(s(a, &format!("{m2}content")), "a cat");
    // Only tool calls: output.value is their JSON.
    assert_eq!(s(a, "output.mime_type"), "application/json");
    assert_eq!(json_attr(a, "output.value")[0]["function"]["name"], "save");
    assert!(!has(a, "llm.output_messages.0.message.content"));
    assert_eq!(
        s(
            a,
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments"
        ),
        r#"{"tag":"cat"}"#
    );

    // Completions prompts and embeddings.
    let prompt = json!({"id": "gen-p", "model": "openai/gpt-3.5-turbo-instruct", "created_at": "2026-01-01T00:00:00Z",
        "api_type": "embeddings", "request": {"input": "embed me"}});
    let decoded = send_one(&rx, exporter.as_ref(), prompt, TraceOptions::default()).await;
    let a = &spans(&decoded)[0].attributes;
    assert_eq!(s(a, "openinference.span.kind"), "EMBEDDING");
    assert_eq!(
        s(a, "embedding.model_name"),
        "openai/gpt-3.5-turbo-instruct"
    );
    assert_eq!(s(a, "input.value"), "embed me");
    assert_eq!(s(a, "input.mime_type"), "text/plain");
}

#[test]
fn urls_and_config() {
    let e = exporter(&config(DEFAULT_BASE_URL, json!({})), &ctx()).unwrap();
    assert_eq!(
        e.inner().http().url().as_str(),
        "https://otlp.arize.com/v1/traces"
    );
    let mut cfg = config(DEFAULT_BASE_URL, json!({}));
    cfg.remove("baseUrl");
    assert_eq!(
        exporter(&cfg, &ctx())
            .unwrap()
            .inner()
            .http()
            .url()
            .as_str(),
        "https://otlp.arize.com/v1/traces"
    );
    // `/v1` alone would be accepted and discarded by Arize: the traces path is always added.
    assert_eq!(
        exporter(&config("https://otlp.arize.com/v1", json!({})), &ctx())
            .unwrap()
            .inner()
            .http()
            .url()
            .as_str(),
        "https://otlp.arize.com/v1/traces"
    );
    for (field, bad) in [("apiKey", "ak\nx"), ("spaceKey", "sp\u{7f}x")] {
        let err = exporter(&config(DEFAULT_BASE_URL, json!({ field: bad })), &ctx())
            .err()
            .unwrap();
        assert!(err.to_string().contains(field), "{err}");
        assert!(!err.to_string().contains(bad));
    }
    let mut cfg = config(DEFAULT_BASE_URL, json!({}));
    cfg.remove("modelId");
    assert!(
        exporter(&cfg, &ctx())
            .err()
            .unwrap()
            .to_string()
            .contains("modelId")
    );
}

#[tokio::test]
async fn privacy_mode_sends_no_content() {
    let rx = Receiver::start().await;
    let exporter = arize(&rx.url(""), json!({}));
    let g = generation(secret_record());
    let opts = TraceOptions {
        privacy_mode: true,
        ..Default::default()
    };
    let p = exporter.encode(&[TraceView::new(&g, opts)]).unwrap();
    assert_eq!(exporter.send(&p).await, Outcome::Delivered);
    let req = rx.next().await;
    assert!(
        !req.body.windows(6).any(|w| w == b"SECRET"),
        "content leaked in privacy mode"
    );
    let decoded = decode_pb(&req.body);
    let a = &spans(&decoded)[0].attributes;
    for kv in a {
        for banned in [
            "input.",
            "output.",
            "llm.input_messages",
            "llm.output_messages",
            "llm.tools",
            "gen_ai.prompt",
            "gen_ai.completion",
            "gen_ai.tool.definitions",
        ] {
            assert!(!kv.key.starts_with(banned), "{} in privacy mode", kv.key);
        }
    }
    // Everything else is still there.
    assert_eq!(s(a, "openinference.span.kind"), "LLM");
    assert_eq!(s(a, "llm.provider"), "anthropic");
    assert_eq!(i(a, "llm.token_count.prompt"), 3);
    assert_eq!(d(a, "llm.cost.total"), 0.5);
    assert_eq!(s(a, "user.id"), "u-1");
    assert_eq!(s(a, "session.id"), "s-1");
    assert_eq!(s(a, "metadata.env"), "prod");
    assert_eq!(
        json_attr(a, "llm.invocation_parameters"),
        json!({"temperature": 0.5})
    );
}

#[tokio::test]
async fn long_values_are_cut_visibly() {
    let rx = Receiver::start().await;
    let exporter = arize(&rx.url(""), json!({}));
    let mut v = secret_record();
    v["response"]["choices"][0]["message"]["content"] = json!("o".repeat(70_000));
    let decoded = send_one(&rx, exporter.as_ref(), v, TraceOptions::default()).await;
    let a = &spans(&decoded)[0].attributes;
    let out = s(a, "output.value");
    assert_eq!(out.chars().count(), 65_536);
    assert!(out.ends_with("…[truncated: 70000 chars]"));
    assert!(b(a, "tracecast.truncated"));
    assert_eq!(
        strings(a, "tracecast.truncated_attributes"),
        vec!["output.value", "llm.output_messages.0.message.content"]
    );
}

#[tokio::test]
async fn answers_are_classified() {
    let rx = Receiver::start().await;
    let exporter = arize(&rx.url(""), json!({}));
    let g = generation(secret_record());
    let p = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    rx.reply(Reply::status(429).header("retry-after", "5"));
    assert!(matches!(
        exporter.send(&p).await,
        Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d == Duration::from_secs(5)
    ));
    rx.reply(Reply::status(401).body("invalid api key"));
    match exporter.send(&p).await {
        Outcome::Unauthorized { status: 401, error } => {
            assert!(error.contains("invalid api key"));
            assert!(!error.contains(API_KEY));
        }
        other => panic!("{other:?}"),
    }
    rx.reply(Reply::status(403));
    assert!(matches!(
        exporter.send(&p).await,
        Outcome::Unauthorized { status: 403, .. }
    ));
    rx.reply(Reply::status(400));
    assert!(matches!(
        exporter.send(&p).await,
        Outcome::Rejected {
            status: Some(400),
            ..
        }
    ));
    rx.reply(Reply::status(500));
    assert!(matches!(
        exporter.send(&p).await,
        Outcome::Retry {
            status: Some(500),
            ..
        }
    ));
    for _ in 0..5 {
        rx.next().await;
    }
}

#[tokio::test]
async fn test_connection_sends_an_empty_request_with_the_credentials() {
    let rx = Receiver::start().await;
    let exporter = arize(&rx.url(""), json!({}));
    let ok = exporter.test_connection().await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(
        ok.message,
        "Arize AX accepted an empty OTLP export request (200)"
    );
    let req = rx.next().await;
    assert_eq!(req.path, "/v1/traces");
    assert!(req.body.is_empty());
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert_arize_otel_headers(&req);

    rx.reply(Reply::status(401));
    let check = exporter.test_connection().await;
    assert_eq!(
        (check.ok, check.status, check.message.as_str()),
        (
            false,
            Some(401),
            "Arize AX rejected the space key / API key pair (401)"
        )
    );
    rx.reply(Reply::status(404));
    let check = exporter.test_connection().await;
    assert!(
        !check.ok && check.message.contains("/v1/traces"),
        "{check:?}"
    );
    let dead = arize(&refused_url().await, json!({}));
    let check = dead.test_connection().await;
    assert!(
        !check.ok && check.message.starts_with("Arize AX could not be reached"),
        "{check:?}"
    );
}
