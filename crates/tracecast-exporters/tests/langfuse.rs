//! The `langfuse` destination against a real HTTP receiver on 127.0.0.1 playing Langfuse's
//! OTLP endpoint (`/api/public/otel/v1/traces`) and its projects API. Bodies are decoded with
//! `opentelemetry-proto`'s OTLP/JSON types; `tests/vendors/test_langfuse.py` checks the golden
//! body against the `langfuse` package's own models and attribute names.

mod common;
use common::golden;
use common::outcomes;
use common::setup::{ALL_GROUPS, config, ctx};

use std::sync::Arc;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};
use sha2::Digest;
use tracecast_exporters::langfuse::{self, LIMITS, MAX_SPAN_STRING_BYTES};
use tracecast_exporters::otlp::proto::common::v1::KeyValue;
use tracecast_exporters::otlp::proto::trace::v1::Span;
use tracecast_exporters::{ExportError, Exporter, Outcome, build};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

const PK: &str = "pk-lf-1234567890";
const SK: &str = "sk-lf-abcdefghij";

fn langfuse_at(rx: &Receiver, extra: Value) -> Arc<dyn Exporter> {
    let mut cfg = json!({"publicKey": PK, "secretKey": SK, "baseUrl": rx.url("")});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            cfg[k] = v;
        }
    }
    match build(DestinationType::Langfuse, &config(cfg), &ctx()) {
        Ok(e) => e,
        Err(e) => panic!("langfuse exporter: {e}"),
    }
}

/// The representative generation: the shared full record plus the Langfuse keys of
/// OpenRouter's table (environment, release) and tags.
fn langfuse_record() -> Value {
    let mut r = full_record();
    let t = r["trace"].as_object_mut().expect("trace object");
    t.insert("environment".into(), json!("production"));
    t.insert("release".into(), json!("2.1.0"));
    t.insert("tags".into(), json!(["checkout", "beta"]));
    r
}

async fn deliver(rx: &Receiver, exporter: &Arc<dyn Exporter>, views: &[TraceView<'_>]) -> Captured {
    let payload = exporter.encode(views).expect("encodes");
    assert_eq!(payload.items, views.len());
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let req = rx.next().await;
    assert_eq!(req.body, payload.body);
    req
}

fn json_attr(attrs: &[KeyValue], key: &str) -> Value {
    serde_json::from_str(s(attrs, key)).unwrap_or_else(|e| panic!("{key} is not JSON: {e}"))
}

fn gen_span<'a>(spans: &[&'a Span]) -> &'a Span {
    spans
        .iter()
        .copied()
        .find(|sp| {
            find(&sp.attributes, "langfuse.observation.type")
                .is_some_and(|_| s(&sp.attributes, "langfuse.observation.type") == "generation")
        })
        .expect("a generation span")
}

#[tokio::test]
async fn posts_otlp_json_to_the_langfuse_endpoint_with_basic_auth_and_golden_body() {
    let rx = Receiver::start().await;
    let exporter = langfuse_at(
        &rx,
        json!({"headers": {"X-Proxy-Token": "proxy-1", "Content-Type": "text/plain"}}),
    );
    let g = generation(langfuse_record());
    let req = deliver(&rx, &exporter, &[TraceView::new(&g, ALL_GROUPS)]).await;

    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/public/otel/v1/traces");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{PK}:{SK}"));
    assert_eq!(
        req.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(req.header("x-langfuse-ingestion-version"), Some("4"));
    assert_eq!(req.header("x-proxy-token"), Some("proxy-1"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    decode(&req.body);

    // The golden file: this body, byte for byte. Regenerate with UPDATE_GOLDEN=1 and review the
    // diff; tests/vendors/test_langfuse.py validates it with the langfuse package.
    golden::assert_bytes("langfuse.json", "Langfuse body", req.body.as_ref());

    // What a destination with default settings sends (no metadata group on): the second
    // golden file, also validated by tests/vendors/test_langfuse.py.
    let req = deliver(
        &rx,
        &exporter,
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    golden::assert_bytes(
        "langfuse_default.json",
        "Langfuse body (default settings)",
        req.body.as_ref(),
    );
}

#[tokio::test]
async fn maps_every_supported_metadata_key() {
    let rx = Receiver::start().await;
    let exporter = langfuse_at(&rx, json!({}));
    let g = generation(langfuse_record());
    let req = deliver(
        &rx,
        &exporter,
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    let decoded = decode(&req.body);
    let res = &decoded.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 2, "span_name adds an intermediate span");
    let (span, generation) = (sp[0], sp[1]);
    let (sa, ga) = (&span.attributes, &generation.attributes);

    // trace_id -> Trace ID (derived: Langfuse needs 32 hex characters); the raw key is kept.
    let trace_id = &sha2::Sha256::digest(b"order_processing_001")[..16];
    assert_eq!(span.trace_id, trace_id);
    assert_eq!(generation.trace_id, trace_id);
    assert_eq!(s(res, "openrouter.trace.id"), "order_processing_001");
    // trace_name -> Trace Name, on the top-most span only.
    assert_eq!(s(sa, "langfuse.trace.name"), "Order Processing Pipeline");
    assert!(!has(ga, "langfuse.trace.name"));
    // span_name -> Span Name of a span observation.
    assert_eq!(span.name, "Extraction");
    assert_eq!(s(sa, "langfuse.observation.type"), "span");
    // generation_name -> Generation Name of the generation observation.
    assert_eq!(generation.name, "Extract Order Details");
    assert_eq!(s(ga, "langfuse.observation.type"), "generation");
    assert_eq!(generation.parent_span_id, span.span_id);
    // parent_span_id: an observation id can only be in the user's own 32-hex trace; this
    // trace's id is derived, so the parent is not sent as the OTLP parent (an orphan Langfuse
    // never receives) but kept as observation metadata of the root.
    assert!(span.parent_span_id.is_empty(), "the trace's root");
    assert_eq!(
        s(sa, "langfuse.observation.metadata.parent_span_id"),
        "00f067aa0ba902b7"
    );
    assert!(!has(ga, "langfuse.observation.metadata.parent_span_id"));
    // service.version is Langfuse's trace and observation version: not OpenRouter's 1.0.0.
    assert!(!has(res, "service.version"));
    // environment and release: resource attribute and observation attribute.
    for attrs in [res, sa, ga] {
        assert_eq!(s(attrs, "langfuse.environment"), "production");
        assert_eq!(s(attrs, "langfuse.release"), "2.1.0");
    }
    assert!(!has(ga, "langfuse.trace.metadata.environment"));
    assert!(!has(ga, "langfuse.trace.metadata.release"));
    // user and session.
    for attrs in [sa, ga] {
        assert_eq!(s(attrs, "user.id"), "user_12345");
        assert_eq!(s(attrs, "session.id"), "session_abc");
    }
    // tags: first-class trace tags, and (as an additional key) trace metadata.
    assert_eq!(strings(ga, "langfuse.trace.tags"), ["checkout", "beta"]);
    assert_eq!(
        s(ga, "langfuse.trace.metadata.tags"),
        r#"["checkout","beta"]"#
    );
    // Additional keys -> trace metadata, typed.
    assert_eq!(s(ga, "langfuse.trace.metadata.order_id"), "ORD-12345");
    assert_eq!(i(ga, "langfuse.trace.metadata.attempt"), 2);
    assert_eq!(d(ga, "langfuse.trace.metadata.score"), 0.75);
    assert!(b(ga, "langfuse.trace.metadata.vip"));
    assert_eq!(
        s(ga, "langfuse.trace.metadata.customer"),
        r#"{"tier":"gold"}"#
    );
    assert!(!has(ga, "langfuse.trace.metadata.nothing"));
    assert!(
        !ga.iter().any(|kv| kv.key.starts_with("trace.metadata.")),
        "every custom key is under langfuse.trace.metadata"
    );

    // Content: Langfuse's input/output attributes, sent once.
    let input = json_attr(ga, "langfuse.observation.input");
    assert_eq!(
        input["messages"][1]["content"],
        "Process this order: 2 widgets"
    );
    let output = json_attr(ga, "langfuse.observation.output");
    assert_eq!(output["completion"], "Looking up the SKU.");
    assert_eq!(output["reasoning"], "Need the SKU first.");
    assert_eq!(output["tool_calls"][0]["function"]["name"], "lookup_sku");
    assert!(!has(ga, "gen_ai.prompt") && !has(ga, "gen_ai.completion"));

    // Generation fields.
    assert_eq!(
        s(ga, "langfuse.observation.model.name"),
        "openai/gpt-4o-2024-08-06"
    );
    assert_eq!(
        json_attr(ga, "langfuse.observation.model.parameters"),
        json!({"max_tokens": 256, "n": 1, "seed": 7, "stop": "END", "temperature": 0.2, "top_p": 0.9})
    );
    // Langfuse's flattening of OpenAI usage: input/output without their details.
    assert_eq!(
        json_attr(ga, "langfuse.observation.usage_details"),
        json!({
            "input": 15, "output": 17, "total": 150,
            "input_cached_tokens": 100, "input_cache_write_tokens": 4, "input_audio_tokens": 1,
            "output_reasoning_tokens": 8, "output_audio_tokens": 2, "output_image_tokens": 3
        })
    );
    assert_eq!(
        json_attr(ga, "langfuse.observation.cost_details"),
        json!({"total": 0.00123})
    );
    // created_at 13:37:42.250 + 310.25 ms to the first token.
    assert_eq!(
        s(ga, "langfuse.observation.completion_start_time"),
        "2026-01-01T13:37:42.560Z"
    );
    assert_eq!(s(ga, "langfuse.observation.level"), "DEFAULT");
    assert!(!has(ga, "langfuse.observation.status_message"));
    // The GenAI attributes stay for Langfuse's metadata.attributes.
    assert_eq!(i(ga, "gen_ai.usage.input_tokens"), 120);
    assert!(!has(ga, "openrouter.observation.type") && !has(ga, "openrouter.trace.name"));
}

#[tokio::test]
async fn hex_trace_ids_and_root_generations() {
    let rx = Receiver::start().await;
    let exporter = langfuse_at(&rx, json!({}));
    let g = generation(json!({
        "id": "gen-root", "model": "openai/gpt-4o-mini", "created_at": "2026-02-01T10:00:00Z",
        "latency": 50.0, "user": "u-9",
        "trace": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "trace_name": "Chat"}
    }));
    let req = deliver(
        &rx,
        &exporter,
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    let decoded = decode(&req.body);
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 1);
    let a = &sp[0].attributes;
    assert_eq!(
        hex::encode(&sp[0].trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(sp[0].parent_span_id.is_empty(), "a root observation");
    assert!(!has(a, "langfuse.observation.metadata.parent_span_id"));
    assert_eq!(sp[0].name, "Chat");
    assert_eq!(s(a, "langfuse.trace.name"), "Chat");
    assert_eq!(s(a, "langfuse.observation.type"), "generation");
    assert_eq!(s(a, "user.id"), "u-9");
    // Nothing to report is not reported.
    for key in [
        "langfuse.environment",
        "langfuse.release",
        "langfuse.trace.tags",
        "langfuse.observation.usage_details",
        "langfuse.observation.cost_details",
        "langfuse.observation.completion_start_time",
        "langfuse.observation.model.parameters",
        "session.id",
    ] {
        assert!(!has(a, key), "{key} sent without a source");
    }
}

#[tokio::test]
async fn an_own_parent_links_and_any_other_stays_a_root_with_the_parent_as_metadata() {
    let rx = Receiver::start().await;
    let exporter = langfuse_at(&rx, json!({}));
    let cases = [
        // (trace_id, parent_span_id, linked)
        ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true),
        ("workflow-1", "00f067aa0ba902b7", false),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "0195f3c2-8d4e-7c1a-9b2f-3e4d5c6b7a89",
            false,
        ),
        ("4bf92f3577b34da6a3ce929d0e0e4736", "my-app-span", false),
    ];
    for (trace_id, parent, linked) in cases {
        let g = generation(json!({
            "id": "gen-p", "model": "openai/gpt-4o-mini", "created_at": "2026-02-01T10:00:00Z",
            "trace": {"trace_id": trace_id, "parent_span_id": parent}
        }));
        let req = deliver(
            &rx,
            &exporter,
            &[TraceView::new(&g, TraceOptions::default())],
        )
        .await;
        let decoded = decode(&req.body);
        let sp = spans(&decoded);
        let a = &sp[0].attributes;
        if linked {
            assert_eq!(hex::encode(&sp[0].parent_span_id), parent);
            assert!(!has(a, "langfuse.observation.metadata.parent_span_id"));
        } else {
            assert!(sp[0].parent_span_id.is_empty(), "{trace_id} {parent}");
            assert_eq!(s(a, "langfuse.observation.metadata.parent_span_id"), parent);
        }
    }

    // An all-zero parent is no parent; an all-zero trace id is never sent.
    let g = generation(json!({
        "id": "gen-z", "model": "m", "created_at": "2026-02-01T10:00:00Z",
        "trace": {"trace_id": "00000000000000000000000000000000", "parent_span_id": "0000000000000000"}
    }));
    let req = deliver(
        &rx,
        &exporter,
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    let decoded = decode(&req.body);
    let sp = spans(&decoded);
    assert!(sp[0].parent_span_id.is_empty());
    assert!(sp[0].trace_id.iter().any(|b| *b != 0));
    assert!(!has(
        &sp[0].attributes,
        "langfuse.observation.metadata.parent_span_id"
    ));
}

#[tokio::test]
async fn environment_is_made_acceptable_and_the_original_kept() {
    let rx = Receiver::start().await;
    let exporter = langfuse_at(&rx, json!({}));
    let g = generation(json!({
        "id": "gen-env", "model": "m", "created_at": "2026-02-01T10:00:00Z",
        "trace": {"environment": "Prod EU", "release": 3, "tags": "a, b,,c"}
    }));
    let req = deliver(
        &rx,
        &exporter,
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    let decoded = decode(&req.body);
    let res = &decoded.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    let a = &spans(&decoded)[0].attributes;
    assert_eq!(s(res, "langfuse.environment"), "prod-eu");
    assert_eq!(s(a, "langfuse.environment"), "prod-eu");
    assert_eq!(s(a, "langfuse.trace.metadata.environment"), "Prod EU");
    assert_eq!(s(a, "langfuse.release"), "3");
    assert_eq!(strings(a, "langfuse.trace.tags"), ["a", "b", "c"]);
}

#[tokio::test]
async fn privacy_mode_sends_no_content() {
    let rx = Receiver::start().await;
    let exporter = langfuse_at(&rx, json!({}));
    let g = generation(secret_record());
    let opts = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let req = deliver(&rx, &exporter, &[TraceView::new(&g, opts)]).await;
    let text = String::from_utf8(req.body.to_vec()).unwrap();
    assert!(!text.contains("SECRET"), "content reached Langfuse: {text}");
    let decoded = decode(&req.body);
    let a = &gen_span(&spans(&decoded)).attributes;
    for key in [
        "langfuse.observation.input",
        "langfuse.observation.output",
        "langfuse.trace.input",
        "langfuse.trace.output",
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.tool.definitions",
    ] {
        assert!(!has(a, key), "{key} sent in privacy mode");
    }
    // Everything else still goes.
    assert_eq!(
        json_attr(a, "langfuse.observation.usage_details"),
        json!({"input": 3, "output": 4, "total": 7})
    );
    assert_eq!(
        json_attr(a, "langfuse.observation.cost_details"),
        json!({"total": 0.5})
    );
    assert_eq!(s(a, "user.id"), "u-1");
    assert_eq!(s(a, "session.id"), "s-1");
    assert_eq!(s(a, "langfuse.trace.metadata.env"), "prod");
    assert_eq!(
        json_attr(a, "langfuse.observation.model.parameters"),
        json!({"temperature": 0.5})
    );
}

#[tokio::test]
async fn failed_calls_are_error_observations() {
    let rx = Receiver::start().await;
    let exporter = langfuse_at(&rx, json!({}));
    let g = generation(json!({
        "id": "gen-err", "model": "m", "created_at": "2026-02-01T10:00:00Z",
        "error": {"code": 429, "message": "upstream rate limited"}
    }));
    let req = deliver(
        &rx,
        &exporter,
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    let decoded = decode(&req.body);
    let sp = spans(&decoded);
    let a = &sp[0].attributes;
    assert_eq!(s(a, "langfuse.observation.level"), "ERROR");
    assert_eq!(
        s(a, "langfuse.observation.status_message"),
        "upstream rate limited"
    );
    assert_eq!(sp[0].status.as_ref().unwrap().code, 2);
}

#[tokio::test]
async fn oversized_content_is_truncated_visibly() {
    let rx = Receiver::start().await;
    let exporter = langfuse_at(&rx, json!({}));
    let huge = "q\"uote ".repeat(400_000); // 2.8 MB, more on the wire
    let g = generation(json!({
        "id": "gen-big", "model": "m", "created_at": "2026-02-01T10:00:00Z",
        "request": {"messages": [{"role": "user", "content": huge}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "short answer"}}]},
        "trace": {"note": "kept"}
    }));
    let req = deliver(
        &rx,
        &exporter,
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    assert!(
        req.body.len() < MAX_SPAN_STRING_BYTES + 64 * 1024,
        "body of {} bytes",
        req.body.len()
    );
    let decoded = decode(&req.body);
    let a = &spans(&decoded)[0].attributes;
    let input = s(a, "langfuse.observation.input");
    assert!(
        input.starts_with(r#"{"messages":[{"content":"q\"uote q\"uote"#),
        "{}",
        &input[..80]
    );
    assert!(
        input.contains("… [truncated by tracecast: kept ") && input.ends_with(" bytes]"),
        "{}",
        &input[input.len() - 120..]
    );
    assert!(b(a, "langfuse.observation.metadata.tracecast_truncated"));
    assert_eq!(
        strings(
            a,
            "langfuse.observation.metadata.tracecast_truncated_attributes"
        ),
        ["langfuse.observation.input"]
    );
    assert_eq!(s(a, "langfuse.observation.level"), "WARNING");
    assert!(s(a, "langfuse.observation.status_message").contains("langfuse.observation.input"));
    // Small strings are untouched.
    assert_eq!(
        json_attr(a, "langfuse.observation.output")["completion"],
        "short answer"
    );
    assert_eq!(s(a, "langfuse.trace.metadata.note"), "kept");
}

#[tokio::test]
async fn answers_are_classified() {
    let rx = Receiver::start().await;
    let exporter = langfuse_at(&rx, json!({}));
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();

    // Langfuse answers 200 `{}`; an OTLP partial success is logged and not retried.
    rx.reply(
        Reply::status(200)
            .header("content-type", "application/json")
            .body(r#"{"partialSuccess":{"rejectedSpans":"1","errorMessage":"span too large"}}"#),
    );
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);

    rx.reply(Reply::status(400).body(r#"{"error":"Invalid content type"}"#));
    match exporter.send(&payload).await {
        Outcome::Rejected { status, error } => {
            assert_eq!(status, Some(400));
            assert!(error.contains("Invalid content type"), "{error}");
        }
        other => panic!("400: {other:?}"),
    }

    for code in [401u16, 403] {
        rx.reply(Reply::status(code).body(r#"{"message":"Invalid credentials"}"#));
        match exporter.send(&payload).await {
            Outcome::Unauthorized { status, .. } => assert_eq!(status, code),
            other => panic!("{code}: {other:?}"),
        }
    }

    rx.reply(Reply::status(429).header("retry-after", "7"));
    outcomes::assert_retry(exporter.send(&payload).await, 429, 7);

    rx.reply(Reply::status(503));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry {
            status: Some(503),
            retry_after: None,
            ..
        }
    ));
    for _ in 0..6 {
        assert_eq!(rx.next().await.path, "/api/public/otel/v1/traces");
    }
}

#[tokio::test]
async fn batches_follow_the_limits_and_fragments_match_encode() {
    let rx = Receiver::start().await;
    let exporter = langfuse_at(&rx, json!({}));
    assert_eq!(exporter.limits(), LIMITS);
    assert_eq!((LIMITS.max_items, LIMITS.max_bytes), (500, 3_500_000));
    let a = generation(langfuse_record());
    let b = generation(secret_record());
    let views = [
        TraceView::new(&a, ALL_GROUPS),
        TraceView::new(&b, TraceOptions::default()),
    ];
    let f = exporter.fragments().expect("OTLP/JSON fragments");
    assert_eq!(f.key(), "otlp-json/langfuse");
    let pieces: Vec<_> = views.iter().map(|v| f.fragment(v).unwrap()).collect();
    let assembled = f.assemble(&pieces);
    let encoded = exporter.encode(&views).unwrap();
    assert_eq!(assembled.body, encoded.body);
    let req = deliver(&rx, &exporter, &views).await;
    assert_eq!(
        decode(&req.body).resource_spans.len(),
        2,
        "one request per batch"
    );
}

#[tokio::test]
async fn connection_test_reads_the_project_then_probes_the_otlp_endpoint() {
    let rx = Receiver::start().await;
    let exporter = langfuse_at(&rx, json!({"headers": {"X-Proxy-Token": "proxy-1"}}));
    rx.reply(
        Reply::status(200)
            .header("content-type", "application/json")
            .body(r#"{"data":[{"id":"proj-1","name":"Shop"}]}"#),
    );
    let check = exporter.test_connection().await;
    assert!(check.ok, "{check:?}");
    assert_eq!(check.status, Some(200));
    assert!(
        check
            .message
            .contains("accepted the public/secret key pair for project \"Shop\""),
        "{}",
        check.message
    );
    let get = rx.next().await;
    assert_eq!(
        (get.method.as_str(), get.path.as_str()),
        ("GET", "/api/public/projects")
    );
    assert!(get.header("authorization").unwrap().starts_with("Basic "));
    assert_eq!(get.header("x-proxy-token"), Some("proxy-1"));
    let post = rx.next().await;
    assert_eq!(post.path, "/api/public/otel/v1/traces");
    assert_eq!(
        serde_json::from_slice::<Value>(&post.body).unwrap(),
        json!({"resourceSpans": []})
    );
    assert_eq!(post.header("x-proxy-token"), Some("proxy-1"));
    assert!(post.header("authorization").unwrap().starts_with("Basic "));
}

#[tokio::test]
async fn connection_test_failures_say_what_was_rejected() {
    let rx = Receiver::start().await;
    let exporter = langfuse_at(&rx, json!({}));

    rx.reply(Reply::status(401).body(r#"{"message":"Invalid credentials"}"#));
    let check = exporter.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(401));
    assert_eq!(
        check.message,
        "Langfuse rejected the public/secret key pair (401)"
    );
    assert!(!check.message.contains(SK) && !check.message.contains(PK));

    rx.reply(Reply::status(403));
    let check = exporter.test_connection().await;
    assert_eq!(
        check.message,
        "Langfuse rejected the public/secret key pair (403)"
    );

    // A Langfuse v2 has the projects API but no OTLP endpoint.
    rx.reply(Reply::status(200).body(r#"{"data":[]}"#));
    rx.reply(Reply::status(404).body("Not Found"));
    let check = exporter.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(404));
    assert!(
        check.message.contains("Langfuse v3 or later"),
        "{}",
        check.message
    );

    rx.reply(Reply::status(404));
    let check = exporter.test_connection().await;
    assert!(
        check.message.contains("check that baseUrl"),
        "{}",
        check.message
    );

    rx.reply(Reply::status(500).body("boom"));
    let check = exporter.test_connection().await;
    assert_eq!(check.status, Some(500));
    assert!(check.message.contains("500") && check.message.contains("boom"));
    for _ in 0..6 {
        rx.next().await;
    }

    let refused = refused_url().await.replace("/v1/traces", "");
    let dead = build(
        DestinationType::Langfuse,
        &config(json!({"publicKey": PK, "secretKey": SK, "baseUrl": refused})),
        &ctx(),
    )
    .unwrap();
    let check = dead.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, None);
    assert!(
        check.message.starts_with("Langfuse could not be reached"),
        "{}",
        check.message
    );
}

#[tokio::test]
async fn config_defaults_and_errors() {
    let e = langfuse::exporter(&config(json!({"publicKey": PK, "secretKey": SK})), &ctx()).unwrap();
    assert_eq!(
        e.otlp().http().url().as_str(),
        "https://us.cloud.langfuse.com/api/public/otel/v1/traces"
    );
    let e = langfuse::exporter(
        &config(json!({"publicKey": PK, "secretKey": SK, "baseUrl": "https://cloud.langfuse.com/api/public/otel/"})),
        &ctx(),
    )
    .unwrap();
    assert_eq!(
        e.otlp().http().url().as_str(),
        "https://cloud.langfuse.com/api/public/otel/v1/traces"
    );

    let err = |cfg: Value| match build(DestinationType::Langfuse, &config(cfg), &ctx()) {
        Err(ExportError::Config(m)) => m,
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("accepted"),
    };
    assert_eq!(err(json!({"publicKey": PK})), "secretKey is required");
    assert_eq!(
        err(json!({"secretKey": SK, "publicKey": " "})),
        "publicKey is required"
    );
    let m = err(json!({"publicKey": PK, "secretKey": SK, "baseUrl": "ftp://lf.example"}));
    assert!(m.starts_with("baseUrl:"), "{m}");
    assert!(!m.contains(SK));
    let m = err(json!({"publicKey": PK, "secretKey": SK, "headers": {"X-Bad": "a\nb"}}));
    assert!(m.contains("headers.X-Bad"), "{m}");
}
