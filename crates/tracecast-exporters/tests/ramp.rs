//! The `ramp` destination against a real OTLP/HTTP receiver on 127.0.0.1 playing Ramp's
//! AI-usage endpoint. Payloads are decoded with `opentelemetry-proto`'s own types.

mod common;
use common::golden;
use common::setup::{self, ALL_GROUPS, config, ctx};

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sha2::Digest;
use tracecast_exporters::json_fit::TRUNCATION_MARKER;
use tracecast_exporters::{ExportError, Exporter, Outcome, build};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

const KEY: &str = "rmp_test_key_0123456789";
const PATH: &str = "/developer/v1/ai-usage/openrouter";

fn ramp(cfg: Value) -> Arc<dyn Exporter> {
    setup::exporter(DestinationType::Ramp, cfg)
}

fn sha(s: &str) -> Vec<u8> {
    sha2::Sha256::digest(s.as_bytes()).to_vec()
}

#[tokio::test]
async fn delivers_otlp_json_to_the_base_url_with_the_bearer_key() {
    let rx = Receiver::start().await;
    let exporter = ramp(json!({
        "apiKey": KEY,
        "baseUrl": rx.url(PATH),
        "headers": {"X-Ramp-Team": "finance", "Authorization": "Bearer not-this-one"}
    }));
    let mut record = full_record();
    record["trace"]["department"] = json!("finance");
    record["trace"]["cost_center"] = json!("CC-1234");
    let g = generation(record);
    let views = [TraceView::new(&g, ALL_GROUPS)];
    let payload = exporter.encode(&views).expect("encodes");
    assert_eq!(payload.items, 1);
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);

    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    // baseUrl is the endpoint itself: nothing is appended.
    assert_eq!(req.path, PATH);
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("authorization"),
        Some("Bearer rmp_test_key_0123456789")
    );
    assert_eq!(req.header("x-ramp-team"), Some("finance"));
    assert_eq!(req.body, payload.body);

    let decoded = decode(&req.body);
    let typed = tracecast_exporters::ramp::exporter(
        &config(json!({"apiKey": KEY, "baseUrl": rx.url(PATH)})),
        &ctx(),
    )
    .unwrap();
    assert_eq!(decoded, typed.request(&views), "JSON and protobuf agree");

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

    // ---- ramp.mdx "Supported Metadata Keys" ----
    // trace_id -> Trace ID
    assert_eq!(mid.trace_id, sha("order_processing_001")[..16]);
    assert_eq!(gen_span.trace_id, mid.trace_id);
    // parent_span_id: it cannot name a span of this trace (the trace id is derived from a
    // name), so the top-most span is a root and carries it as an attribute.
    assert!(mid.parent_span_id.is_empty());
    assert_eq!(
        s(&mid.attributes, "openrouter.trace.parent_span_id"),
        "00f067aa0ba902b7"
    );
    // span_name -> Span Name (intermediate span)
    assert_eq!(mid.name, "Extraction");
    // generation_name -> Span Name (generation span)
    assert_eq!(gen_span.name, "Extract Order Details");
    assert_eq!(gen_span.parent_span_id, mid.span_id);
    assert_eq!(gen_span.span_id, sha(&g.id)[..8]);
    // trace_name -> Span Name of the root (see `a_root_span_is_named_after_the_trace`); here
    // the root is the caller's, and the name travels as an attribute.
    assert_eq!(
        s(&mid.attributes, "openrouter.trace.name"),
        "Order Processing Pipeline"
    );

    // ---- Additional context ----
    let a = &gen_span.attributes;
    assert_eq!(s(a, "user.id"), "user_12345");
    assert_eq!(s(a, "session.id"), "session_abc");
    assert_eq!(s(a, "trace.metadata.department"), "finance");
    assert_eq!(s(a, "trace.metadata.cost_center"), "CC-1234");
    assert_eq!(s(a, "trace.metadata.order_id"), "ORD-12345");
    assert_eq!(i(a, "trace.metadata.attempt"), 2);

    // ---- Trace Data: what Ramp reads (its write-up's list), tokens, cost, timing, model ----
    assert_eq!(s(a, "gen_ai.request.model"), "openai/gpt-4o");
    assert_eq!(s(a, "gen_ai.response.model"), "openai/gpt-4o-2024-08-06");
    assert_eq!(s(a, "gen_ai.provider.name"), "openai");
    assert_eq!(s(a, "gen_ai.system"), "openai");
    assert_eq!(s(a, "openrouter.provider_name"), "OpenAI");
    assert_eq!(i(a, "gen_ai.usage.input_tokens"), 120);
    assert_eq!(i(a, "gen_ai.usage.output_tokens"), 30);
    assert_eq!(i(a, "gen_ai.usage.prompt_tokens"), 120);
    assert_eq!(i(a, "gen_ai.usage.completion_tokens"), 30);
    assert_eq!(i(a, "gen_ai.usage.total_tokens"), 150);
    assert_eq!(i(a, "gen_ai.usage.input_tokens.cached"), 100);
    assert_eq!(i(a, "gen_ai.usage.output_tokens.reasoning"), 8);
    assert_eq!(d(a, "gen_ai.usage.total_cost"), 0.00123);
    assert_eq!(d(a, "gen_ai.usage.cost"), 0.00123);
    assert_eq!(d(a, "gen_ai.usage.input_cost"), 0.00083);
    assert_eq!(d(a, "gen_ai.usage.output_cost"), 0.0004);
    assert_eq!(d(a, "openrouter.latency_ms"), 1523.5);
    assert_eq!(
        gen_span.end_time_unix_nano - gen_span.start_time_unix_nano,
        1_523_500_000
    );
    assert!(s(a, "gen_ai.prompt").contains("Process this order"));
    assert!(s(a, "gen_ai.completion").contains("Looking up the SKU."));
    assert!(!has(a, "tracecast.truncated"));

    golden::assert_bytes("ramp.json", "Ramp body", req.body.as_ref());
}

#[tokio::test]
async fn a_root_span_is_named_after_the_trace() {
    let rx = Receiver::start().await;
    let exporter = ramp(json!({"apiKey": KEY, "baseUrl": rx.url(PATH)}));
    let mut rec = secret_record();
    rec["trace"] =
        json!({"trace_id": "expense_analysis_001", "trace_name": "Expense Processing Pipeline"});
    let g = generation(rec);
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let decoded = decode(&rx.next().await.body);
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 1);
    assert!(sp[0].parent_span_id.is_empty());
    assert_eq!(sp[0].name, "Expense Processing Pipeline");
    assert_eq!(sp[0].trace_id, sha("expense_analysis_001")[..16]);
    // No cost-allocation group: no split.
    assert!(!has(&sp[0].attributes, "gen_ai.usage.input_cost"));
}

#[tokio::test]
async fn privacy_mode_sends_no_content() {
    let rx = Receiver::start().await;
    let exporter = ramp(json!({"apiKey": KEY, "baseUrl": rx.url(PATH)}));
    let g = generation(secret_record());
    let private = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let payload = exporter.encode(&[TraceView::new(&g, private)]).unwrap();
    exporter.send(&payload).await;
    let req = rx.next().await;
    let text = String::from_utf8_lossy(&req.body);
    assert!(!text.contains("SECRET"), "content leaked: {text}");
    let decoded = decode(&req.body);
    let a = &spans(&decoded)[0].attributes;
    for gone in [
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.tool.definitions",
    ] {
        assert!(!has(a, gone), "{gone} in privacy mode");
    }
    assert_eq!(i(a, "gen_ai.usage.input_tokens"), 3);
    assert_eq!(i(a, "gen_ai.usage.output_tokens"), 4);
    assert_eq!(d(a, "gen_ai.usage.total_cost"), 0.5);
    assert_eq!(s(a, "gen_ai.request.model"), "anthropic/claude-sonnet-4");
    assert_eq!(s(a, "trace.metadata.env"), "prod");
    assert_eq!(s(a, "user.id"), "u-1");

    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    exporter.send(&payload).await;
    let text = String::from_utf8_lossy(&rx.next().await.body).to_string();
    for marker in ["SECRET-PROMPT", "SECRET-ANSWER", "SECRET-TOOLDOC"] {
        assert!(text.contains(marker), "{marker} missing");
    }
}

#[tokio::test]
async fn oversized_content_is_truncated_visibly() {
    let rx = Receiver::start().await;
    let exporter = ramp(json!({"apiKey": KEY, "baseUrl": rx.url(PATH)}));
    let mut record = secret_record();
    record["request"]["messages"] = json!([
        {"role": "user", "content": "x".repeat(300_000)},
        {"role": "user", "content": "short"}
    ]);
    let g = generation(record);
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert!(payload.body.len() < 150 * 1024, "{}", payload.body.len());
    exporter.send(&payload).await;
    let decoded = decode(&rx.next().await.body);
    let a = &spans(&decoded)[0].attributes;
    let prompt = s(a, "gen_ai.prompt");
    assert!(prompt.len() <= tracecast_exporters::ramp::MAX_CONTENT_BYTES);
    let prompt: Value = serde_json::from_str(prompt).expect("still valid JSON");
    assert!(
        prompt["messages"][0]["content"]
            .as_str()
            .unwrap()
            .ends_with(TRUNCATION_MARKER)
    );
    assert_eq!(prompt["messages"][1]["content"], "short");
    assert!(b(a, "tracecast.truncated"));
    assert_eq!(
        strings(a, "tracecast.truncated_attributes"),
        vec!["gen_ai.prompt"]
    );
    assert!(
        s(a, "gen_ai.completion").contains("SECRET-ANSWER"),
        "untouched"
    );
}

#[tokio::test]
async fn outcomes_are_classified() {
    let rx = Receiver::start().await;
    let exporter = ramp(json!({"apiKey": KEY, "baseUrl": rx.url(PATH)}));
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    rx.reply(Reply::status(202));
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    rx.reply(Reply::status(429).header("retry-after", "7"));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d == Duration::from_secs(7)
    ));
    rx.reply(Reply::status(401).body(r#"{"error_v2":{"error_code":"UNAUTHORIZED"}}"#));
    match exporter.send(&payload).await {
        Outcome::Unauthorized { status: 401, error } => assert!(!error.contains(KEY), "{error}"),
        other => panic!("401: {other:?}"),
    }
    rx.reply(Reply::status(403));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Unauthorized { status: 403, .. }
    ));
    rx.reply(Reply::status(422).body("bad payload"));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Rejected {
            status: Some(422),
            ..
        }
    ));
    rx.reply(Reply::status(502));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry {
            status: Some(502),
            ..
        }
    ));
    for _ in 0..6 {
        rx.next().await;
    }
    let refused = ramp(json!({"apiKey": KEY, "baseUrl": refused_url().await}));
    assert!(matches!(
        refused.send(&payload).await,
        Outcome::Retry { status: None, .. }
    ));
}

#[tokio::test]
async fn test_connection_sends_an_empty_request_with_the_key() {
    let rx = Receiver::start().await;
    let exporter = ramp(
        json!({"apiKey": KEY, "baseUrl": rx.url(PATH), "headers": {"X-Ramp-Team": "finance"}}),
    );

    rx.reply(Reply::status(200).body("{}"));
    let ok = exporter.test_connection().await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(
        ok.message,
        "Ramp accepted an empty OTLP export request (200)"
    );
    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, PATH);
    assert_eq!(&req.body[..], br#"{"resourceSpans":[]}"#);
    assert_eq!(
        req.header("authorization"),
        Some("Bearer rmp_test_key_0123456789")
    );
    assert_eq!(req.header("x-ramp-team"), Some("finance"));

    // The key is checked before the body: a 400 to the empty export still proves it.
    rx.reply(Reply::status(400).body("no spans"));
    let check = exporter.test_connection().await;
    assert!(check.ok, "{check:?}");
    assert_eq!(check.status, Some(400));

    rx.reply(Reply::status(401));
    let check = exporter.test_connection().await;
    assert_eq!(
        (check.ok, check.status, check.message.as_str()),
        (false, Some(401), "Ramp rejected the API key (401)")
    );
    rx.reply(Reply::status(403));
    let check = exporter.test_connection().await;
    assert_eq!(check.message, "Ramp rejected the API key (403)");
    rx.reply(Reply::status(404));
    let check = exporter.test_connection().await;
    assert!(!check.ok && check.message.contains("baseUrl"), "{check:?}");
    rx.reply(Reply::status(500).body("boom"));
    let check = exporter.test_connection().await;
    assert_eq!(
        (check.ok, check.message.as_str()),
        (false, "Ramp answered 500 to the test request: boom")
    );
    for m in [&ok.message, &check.message] {
        assert!(!m.contains(KEY));
    }

    let refused = ramp(json!({"apiKey": KEY, "baseUrl": refused_url().await}));
    let check = refused.test_connection().await;
    assert!(
        !check.ok && check.message.starts_with("Ramp could not be reached"),
        "{check:?}"
    );
}

#[test]
fn base_url_defaults_to_ramps_endpoint_and_bad_configs_name_the_field() {
    let e = tracecast_exporters::ramp::exporter(&config(json!({"apiKey": KEY})), &ctx()).unwrap();
    assert_eq!(
        e.http().url().as_str(),
        "https://api.ramp.com/developer/v1/ai-usage/openrouter"
    );
    assert_eq!(e.http().method(), "POST");
    let limits = e.limits();
    assert_eq!((limits.max_items, limits.max_bytes), (50, 1024 * 1024));

    let err = |cfg: Value| match build(DestinationType::Ramp, &config(cfg), &ctx()) {
        Err(ExportError::Config(m)) => m,
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("accepted"),
    };
    assert!(err(json!({})).contains("apiKey"));
    let m = err(json!({"apiKey": KEY, "baseUrl": "ftp://x"}));
    assert!(m.starts_with("baseUrl"), "{m}");
    let m = err(json!({"apiKey": "bad\nkey"}));
    assert!(m.starts_with("apiKey") && !m.contains("bad\nkey"), "{m}");
    let m = err(json!({"apiKey": KEY, "headers": {"X": 1}}));
    assert!(m.contains("headers"), "{m}");
}
