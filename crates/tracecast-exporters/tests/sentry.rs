//! The `sentry` destination against a real OTLP/HTTP receiver on 127.0.0.1 playing Sentry's
//! OTLP traces endpoint. Payloads are decoded with `opentelemetry-proto`'s own types.

mod common;
use common::golden;
use common::setup::{self, ALL_GROUPS, config, ctx};

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sha2::Digest;
use tracecast_exporters::json_fit::TRUNCATION_MARKER;
use tracecast_exporters::otlp::proto::trace::v1::Span;
use tracecast_exporters::{ExportError, Exporter, Outcome, build};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

const DSN: &str = "https://abc123publickey@o123.ingest.us.sentry.io/456";

fn sentry(cfg: Value) -> Arc<dyn Exporter> {
    setup::exporter(DestinationType::Sentry, cfg)
}

fn endpoint(rx: &Receiver) -> String {
    rx.url("/api/456/integration/otlp/v1/traces")
}

fn sha(s: &str) -> Vec<u8> {
    sha2::Sha256::digest(s.as_bytes()).to_vec()
}

fn keys(span: &Span) -> Vec<&str> {
    span.attributes.iter().map(|kv| kv.key.as_str()).collect()
}

#[tokio::test]
async fn delivers_otlp_json_with_the_dsn_key_and_sentrys_attributes() {
    let rx = Receiver::start().await;
    let exporter = sentry(json!({
        "otlpEndpoint": endpoint(&rx),
        "dsn": DSN,
        "headers": {"X-Team": "ml", "X-Sentry-Auth": "sentry sentry_key=not-this-one"}
    }));
    let mut record = full_record();
    record["trace"]["environment"] = json!("production");
    record["trace"]["release"] = json!("v2.1.0");
    let g = generation(record);
    let views = [TraceView::new(&g, ALL_GROUPS)];
    let payload = exporter.encode(&views).expect("encodes");
    assert_eq!(payload.items, 1);
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);

    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/456/integration/otlp/v1/traces");
    assert_eq!(req.header("content-type"), Some("application/json"));
    // Sentry's documented OTLP header, from the DSN's public key; it wins over a custom one.
    assert_eq!(
        req.header("x-sentry-auth"),
        Some("sentry sentry_key=abc123publickey")
    );
    assert_eq!(req.header("x-team"), Some("ml"));
    assert_eq!(req.body, payload.body);

    // The JSON decodes into the OTLP message, and is the same message as the protobuf path.
    let decoded = decode(&req.body);
    let typed = tracecast_exporters::sentry::exporter(
        &config(json!({"otlpEndpoint": endpoint(&rx), "dsn": DSN})),
        &ctx(),
    )
    .unwrap();
    assert_eq!(decoded, typed.otlp().request(&views));

    let res = &decoded.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(s(res, "service.name"), "openrouter");
    assert_eq!(s(res, "openrouter.trace.id"), "order_processing_001");
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 2);
    let (mid, gen_span) = (sp[0], sp[1]);

    // ---- sentry.mdx "Supported Metadata Keys" ----
    // trace_id -> Trace ID
    assert_eq!(mid.trace_id, sha("order_processing_001")[..16]);
    assert_eq!(gen_span.trace_id, mid.trace_id);
    // parent_span_id: it cannot name a span of this trace (the trace id is derived from a
    // name), so Sentry would wait for a segment that never comes: the top-most span is the
    // root (segment, named by trace_name) and carries the parent as an attribute.
    assert!(mid.parent_span_id.is_empty());
    assert_eq!(
        s(&mid.attributes, "openrouter.trace.parent_span_id"),
        "00f067aa0ba902b7"
    );
    assert_eq!(
        s(&mid.attributes, "sentry.segment.name"),
        "Order Processing Pipeline"
    );
    // span_name -> Span Description (intermediate span); as the root (Sentry's segment) the
    // span itself is named by trace_name, as in `a_root_span_is_named_after_the_trace`.
    assert_eq!(mid.name, "Order Processing Pipeline");
    assert_eq!(s(&mid.attributes, "sentry.description"), "Extraction");
    // generation_name -> Span Description (generation span)
    assert_eq!(gen_span.parent_span_id, mid.span_id);
    assert_eq!(gen_span.name, "Extract Order Details");
    assert_eq!(
        s(&gen_span.attributes, "sentry.description"),
        "Extract Order Details"
    );
    assert_eq!(gen_span.span_id, sha(&g.id)[..8]);
    // trace_name -> Transaction Name, also carried as an attribute.
    assert_eq!(
        s(&mid.attributes, "openrouter.trace.name"),
        "Order Processing Pipeline"
    );

    // ---- Additional context: user, session, custom metadata, environment, release ----
    let a = &gen_span.attributes;
    assert_eq!(s(a, "user.id"), "user_12345");
    assert_eq!(s(a, "session.id"), "session_abc");
    assert_eq!(s(a, "gen_ai.conversation.id"), "session_abc");
    assert_eq!(s(&mid.attributes, "user.id"), "user_12345");
    assert_eq!(s(a, "trace.metadata.order_id"), "ORD-12345");
    assert_eq!(s(a, "trace.metadata.priority"), "high");
    assert_eq!(i(a, "trace.metadata.attempt"), 2);
    assert_eq!(d(a, "trace.metadata.score"), 0.75);
    assert!(b(a, "trace.metadata.vip"));
    assert_eq!(s(a, "trace.metadata.labels"), r#"["a","b"]"#);
    assert_eq!(s(a, "trace.metadata.customer"), r#"{"tier":"gold"}"#);
    assert!(!has(a, "trace.metadata.nothing"));
    assert_eq!(s(a, "trace.metadata.environment"), "production");
    assert_eq!(s(a, "sentry.environment"), "production");
    assert_eq!(s(a, "sentry.release"), "v2.1.0");
    assert_eq!(s(&mid.attributes, "sentry.environment"), "production");

    // ---- AI monitoring (Sentry's registry names) ----
    assert_eq!(s(a, "sentry.op"), "gen_ai.chat");
    assert_eq!(s(a, "gen_ai.operation.name"), "chat");
    assert_eq!(s(a, "gen_ai.provider.name"), "openai");
    assert_eq!(s(a, "gen_ai.request.model"), "openai/gpt-4o");
    assert_eq!(s(a, "gen_ai.response.model"), "openai/gpt-4o-2024-08-06");
    assert_eq!(s(a, "gen_ai.response.id"), g.id);
    assert_eq!(s(a, "gen_ai.response.finish_reasons"), r#"["tool_calls"]"#);
    assert_eq!(i(a, "gen_ai.usage.input_tokens"), 120);
    assert_eq!(i(a, "gen_ai.usage.output_tokens"), 30);
    assert_eq!(i(a, "gen_ai.usage.total_tokens"), 150);
    assert_eq!(i(a, "gen_ai.usage.cache_read.input_tokens"), 100);
    assert_eq!(i(a, "gen_ai.usage.cache_creation.input_tokens"), 4);
    assert_eq!(i(a, "gen_ai.usage.reasoning.output_tokens"), 8);
    assert_eq!(d(a, "gen_ai.cost.total_tokens"), 0.00123);
    assert_eq!(d(a, "gen_ai.cost.input_tokens"), 0.00083);
    assert_eq!(d(a, "gen_ai.cost.output_tokens"), 0.0004);
    assert_eq!(d(a, "gen_ai.request.temperature"), 0.2);
    assert_eq!(i(a, "gen_ai.request.max_tokens"), 256);
    assert_eq!(s(a, "gen_ai.request.seed"), "7");
    assert_eq!(strings(a, "gen_ai.request.stop_sequences"), vec!["END"]);
    assert!(b(a, "gen_ai.response.streaming"));
    assert_eq!(d(a, "gen_ai.response.time_to_first_chunk"), 0.31025);
    // Deprecated aliases and replaced keys are not sent.
    for gone in [
        "gen_ai.system",
        "gen_ai.usage.prompt_tokens",
        "gen_ai.usage.completion_tokens",
        "gen_ai.usage.input_tokens.cached",
        "gen_ai.usage.input_tokens.cache_write",
        "gen_ai.usage.output_tokens.reasoning",
        "gen_ai.response.finish_reason",
        "gen_ai.usage.cost",
        "gen_ai.usage.total_cost",
        "gen_ai.prompt",
        "gen_ai.completion",
    ] {
        assert!(
            !has(a, gone),
            "{gone} should not be sent: {:?}",
            keys(gen_span)
        );
    }
    // Content in the registry's message shape.
    let input: Value = serde_json::from_str(s(a, "gen_ai.input.messages")).unwrap();
    assert_eq!(
        input,
        json!([
            {"role": "system", "parts": [{"type": "text", "content": "You extract orders."}]},
            {"role": "user", "parts": [{"type": "text", "content": "Process this order: 2 widgets"}]}
        ])
    );
    let output: Value = serde_json::from_str(s(a, "gen_ai.output.messages")).unwrap();
    assert_eq!(
        output,
        json!([{
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "Need the SKU first."},
                {"type": "text", "content": "Looking up the SKU."},
                {"type": "tool_call", "id": "call_1", "name": "lookup_sku", "arguments": {"name": "widget"}}
            ],
            "finish_reason": "tool_calls"
        }])
    );
    let tools: Value = serde_json::from_str(s(a, "gen_ai.tool.definitions")).unwrap();
    assert_eq!(tools[0]["function"]["name"], "lookup_sku");
    assert!(!has(a, "tracecast.truncated"));
    // Metadata groups still arrive under their openrouter.* names.
    assert_eq!(s(a, "openrouter.data_region"), "europe");
    assert!(!b(a, "openrouter.is_byok"));

    // The golden file: this body, byte for byte. Regenerate with UPDATE_GOLDEN=1 and review
    // the diff.
    golden::assert_bytes("sentry.json", "Sentry body", req.body.as_ref());
}

#[tokio::test]
async fn a_root_span_is_named_after_the_trace() {
    let rx = Receiver::start().await;
    let exporter = sentry(json!({"otlpEndpoint": endpoint(&rx), "dsn": DSN}));
    // No parent: tracecast emits the root, which Sentry shows as the transaction.
    let mut with_span = full_record();
    with_span["trace"]
        .as_object_mut()
        .unwrap()
        .remove("parent_span_id");
    let mut bare = secret_record();
    bare["trace"] =
        json!({"trace_name": "Error Analysis Agent", "generation_name": "Analyze Stack Trace"});
    let mut unnamed = secret_record();
    unnamed["id"] = json!("gen-unnamed");
    unnamed["trace"] = json!({});
    let (a, b_, c) = (generation(with_span), generation(bare), generation(unnamed));
    let views = [
        TraceView::new(&a, TraceOptions::default()),
        TraceView::new(&b_, TraceOptions::default()),
        TraceView::new(&c, TraceOptions::default()),
    ];
    let payload = exporter.encode(&views).unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let decoded = decode(&rx.next().await.body);
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 4);

    // Intermediate root: named after the trace, described by span_name.
    assert!(sp[0].parent_span_id.is_empty());
    assert_eq!(sp[0].name, "Order Processing Pipeline");
    assert_eq!(s(&sp[0].attributes, "sentry.description"), "Extraction");
    assert!(!has(&sp[0].attributes, "sentry.op"));
    for span in [sp[0], sp[1]] {
        assert_eq!(
            s(&span.attributes, "sentry.segment.name"),
            "Order Processing Pipeline"
        );
    }
    assert_eq!(sp[1].name, "Extract Order Details");

    // Generation root: the transaction name is trace_name, the description generation_name.
    assert!(sp[2].parent_span_id.is_empty());
    assert_eq!(sp[2].name, "Error Analysis Agent");
    assert_eq!(
        s(&sp[2].attributes, "sentry.description"),
        "Analyze Stack Trace"
    );
    assert_eq!(
        s(&sp[2].attributes, "sentry.segment.name"),
        "Error Analysis Agent"
    );
    assert_eq!(s(&sp[2].attributes, "sentry.op"), "gen_ai.chat");

    // Nothing named: both default to the model slug.
    assert_eq!(sp[3].name, "anthropic/claude-sonnet-4");
    assert_eq!(
        s(&sp[3].attributes, "sentry.description"),
        "anthropic/claude-sonnet-4"
    );
    assert_eq!(sp[3].trace_id, sha("gen-unnamed")[..16]);
}

#[tokio::test]
async fn privacy_mode_sends_no_content() {
    let rx = Receiver::start().await;
    let exporter = sentry(json!({"otlpEndpoint": endpoint(&rx), "dsn": DSN}));
    let g = generation(secret_record());
    let private = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let payload = exporter.encode(&[TraceView::new(&g, private)]).unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let req = rx.next().await;
    let text = String::from_utf8_lossy(&req.body);
    assert!(!text.contains("SECRET"), "content leaked: {text}");
    let decoded = decode(&req.body);
    let a = &spans(&decoded)[0].attributes;
    for gone in [
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.tool.definitions",
    ] {
        assert!(!has(a, gone), "{gone} in privacy mode");
    }
    // Everything else is still sent.
    assert_eq!(i(a, "gen_ai.usage.input_tokens"), 3);
    assert_eq!(i(a, "gen_ai.usage.output_tokens"), 4);
    assert_eq!(d(a, "gen_ai.cost.total_tokens"), 0.5);
    assert_eq!(s(a, "gen_ai.request.model"), "anthropic/claude-sonnet-4");
    assert_eq!(s(a, "trace.metadata.env"), "prod");
    assert_eq!(s(a, "user.id"), "u-1");
    assert_eq!(s(a, "session.id"), "s-1");
    assert_eq!(strings(a, "openrouter.tool_call_names"), vec!["lookup"]);

    // The same record without privacy mode does carry it (so the check above means something).
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    exporter.send(&payload).await;
    let text = String::from_utf8_lossy(&rx.next().await.body).to_string();
    for marker in [
        "SECRET-PROMPT",
        "SECRET-ANSWER",
        "SECRET-THOUGHT",
        "SECRET-TOOLDOC",
        "SECRET-ARG",
    ] {
        assert!(text.contains(marker), "{marker} missing");
    }
}

#[tokio::test]
async fn oversized_content_is_truncated_visibly() {
    let rx = Receiver::start().await;
    let exporter = sentry(json!({"otlpEndpoint": endpoint(&rx), "dsn": DSN}));
    let mut record = secret_record();
    let huge = "lorem ipsum ".repeat(30_000); // 360 KB
    record["request"]["messages"] = json!([
        {"role": "system", "content": huge},
        {"role": "user", "content": "the question"}
    ]);
    record["response"]["choices"][0]["message"]["content"] = json!(huge);
    let g = generation(record);
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert!(payload.body.len() < 200 * 1024, "{}", payload.body.len());
    exporter.send(&payload).await;
    let decoded = decode(&rx.next().await.body);
    let a = &spans(&decoded)[0].attributes;
    let cap = tracecast_exporters::sentry::MAX_CONTENT_BYTES;
    let input = s(a, "gen_ai.input.messages");
    assert!(input.len() <= cap, "{}", input.len());
    let input: Value = serde_json::from_str(input).expect("still valid JSON");
    let system = input[0]["parts"][0]["content"].as_str().unwrap();
    assert!(system.ends_with(TRUNCATION_MARKER) && system.len() > 30_000);
    assert_eq!(input[1]["parts"][0]["content"], "the question");
    let output = s(a, "gen_ai.output.messages");
    assert!(output.len() <= cap);
    assert!(output.contains(TRUNCATION_MARKER));
    assert!(b(a, "tracecast.truncated"));
    assert_eq!(
        strings(a, "tracecast.truncated_attributes"),
        vec!["gen_ai.input.messages", "gen_ai.output.messages"]
    );
    // The usage data is untouched.
    assert_eq!(i(a, "gen_ai.usage.input_tokens"), 3);
}

#[tokio::test]
async fn outcomes_follow_sentrys_answers() {
    let rx = Receiver::start().await;
    let exporter = sentry(json!({"otlpEndpoint": endpoint(&rx), "dsn": DSN}));
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();

    // Relay answers 202 Accepted.
    rx.reply(Reply::status(202));
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    // 429 with Retry-After.
    rx.reply(Reply::status(429).header("retry-after", "3"));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d == Duration::from_secs(3)
    ));
    // 429 with only Sentry's rate-limit header: the span/transaction entry decides.
    rx.reply(Reply::status(429).header(
        "x-sentry-rate-limits",
        "60:transaction;span:organization:quota_exceeded, 2700:error:project",
    ));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d == Duration::from_secs(60)
    ));
    // Credentials refused: pause.
    rx.reply(Reply::status(401).body(r#"{"detail":"missing authorization information"}"#));
    match exporter.send(&payload).await {
        Outcome::Unauthorized { status: 401, error } => {
            assert!(!error.contains("abc123publickey"), "{error}")
        }
        other => panic!("401: {other:?}"),
    }
    rx.reply(
        Reply::status(403).body(r#"{"detail":"event submission rejected with_reason: ProjectId"}"#),
    );
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Unauthorized { status: 403, .. }
    ));
    // Too large / bad data: dead letters.
    rx.reply(Reply::status(413));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Rejected {
            status: Some(413),
            ..
        }
    ));
    rx.reply(Reply::status(400).body(r#"{"detail":"invalid OTLP"}"#));
    match exporter.send(&payload).await {
        Outcome::Rejected {
            status: Some(400),
            error,
        } => assert!(error.contains("invalid OTLP"), "{error}"),
        other => panic!("400: {other:?}"),
    }
    rx.reply(Reply::status(503));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry {
            status: Some(503),
            ..
        }
    ));
    for _ in 0..8 {
        rx.next().await;
    }
    let refused = sentry(json!({"otlpEndpoint": refused_url().await, "dsn": DSN}));
    assert!(matches!(
        refused.send(&payload).await,
        Outcome::Retry { status: None, .. }
    ));
}

#[tokio::test]
async fn test_connection_sends_an_empty_request_with_the_key() {
    let rx = Receiver::start().await;
    let exporter =
        sentry(json!({"otlpEndpoint": endpoint(&rx), "dsn": DSN, "headers": {"X-Team": "ml"}}));

    rx.reply(Reply::status(202));
    let ok = exporter.test_connection().await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.status, Some(202));
    assert_eq!(
        ok.message,
        "Sentry accepted an empty OTLP export request (202)"
    );
    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/456/integration/otlp/v1/traces");
    assert_eq!(&req.body[..], br#"{"resourceSpans":[]}"#);
    assert_eq!(
        req.header("x-sentry-auth"),
        Some("sentry sentry_key=abc123publickey")
    );
    assert_eq!(req.header("x-team"), Some("ml"));

    rx.reply(Reply::status(401));
    let check = exporter.test_connection().await;
    assert_eq!(
        (check.ok, check.status, check.message.as_str()),
        (false, Some(401), "Sentry rejected the DSN key (401)")
    );
    rx.reply(Reply::status(404));
    let check = exporter.test_connection().await;
    assert!(
        !check.ok && check.message.contains("/integration/otlp/v1/traces"),
        "{check:?}"
    );
    rx.reply(Reply::status(400).body("bad"));
    let check = exporter.test_connection().await;
    assert!(!check.ok, "{check:?}");

    // A DSN of another project than the endpoint's: the refusal says why.
    let other = sentry(json!({
        "otlpEndpoint": endpoint(&rx),
        "dsn": "https://abc123publickey@o123.ingest.us.sentry.io/789"
    }));
    rx.reply(Reply::status(403));
    let check = other.test_connection().await;
    assert!(!check.ok);
    assert!(
        check
            .message
            .starts_with("Sentry rejected the DSN key (403): the DSN is for project 789 but otlpEndpoint is for project 456"),
        "{check:?}"
    );
    assert!(!check.message.contains("abc123publickey"));

    let refused = sentry(json!({"otlpEndpoint": refused_url().await, "dsn": DSN}));
    let check = refused.test_connection().await;
    assert!(
        !check.ok && check.message.starts_with("Sentry could not be reached"),
        "{check:?}"
    );
}

#[test]
fn bad_configs_are_config_errors_that_name_the_field_and_hide_the_key() {
    let err = |cfg: Value| match build(DestinationType::Sentry, &config(cfg), &ctx()) {
        Err(ExportError::Config(m)) => m,
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("accepted"),
    };
    let m = err(json!({"dsn": DSN}));
    assert!(m.contains("otlpEndpoint"), "{m}");
    let m = err(
        json!({"otlpEndpoint": "https://o1.ingest.sentry.io/api/1/integration/otlp/v1/traces"}),
    );
    assert!(m.contains("dsn"), "{m}");
    let m = err(json!({"otlpEndpoint": "not a url", "dsn": DSN}));
    assert!(m.starts_with("otlpEndpoint"), "{m}");
    for dsn in [
        "https://s3cr3tkey@o1.ingest.sentry.io/not-a-project",
        "ftp://s3cr3tkey@o1.ingest.sentry.io/1",
        "https://o1.ingest.sentry.io/1",
    ] {
        let m = err(
            json!({"otlpEndpoint": "https://o1.ingest.sentry.io/api/1/integration/otlp/v1/traces", "dsn": dsn}),
        );
        assert!(m.starts_with("dsn"), "{m}");
        assert!(!m.contains("s3cr3tkey"), "the key leaked: {m}");
    }
    let m = err(json!({
        "otlpEndpoint": "https://o1.ingest.sentry.io/api/1/integration/otlp/v1/traces",
        "dsn": DSN,
        "headers": {"bad header": "x"}
    }));
    assert!(m.contains("headers"), "{m}");
}
