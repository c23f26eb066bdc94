//! The `langsmith` destination against a real HTTP receiver on 127.0.0.1 playing LangSmith's
//! OTLP endpoint. Bodies are protobuf (what LangSmith's own SDKs send), decoded with
//! `opentelemetry-proto`'s own prost types.

mod common;
use common::golden;
use common::setup::{self, ALL_GROUPS, config, ctx};

use std::sync::Arc;
use std::time::Duration;

use common::*;
use prost::Message;
use serde_json::{Value, json};
use tracecast_exporters::otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use tracecast_exporters::otlp::proto::trace::v1::Span;
use tracecast_exporters::{Exporter, Outcome, build, langsmith};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

fn exporter(cfg: Value) -> Arc<dyn Exporter> {
    setup::exporter(DestinationType::Langsmith, cfg)
}

/// Encodes, sends through the exporter to the receiver and returns the request it got.
async fn deliver(rx: &Receiver, exporter: &dyn Exporter, views: &[TraceView<'_>]) -> Captured {
    let payload = exporter.encode(views).expect("encodes");
    assert_eq!(payload.items, views.len());
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let req = rx.next().await;
    assert_eq!(req.body, payload.body, "the payload is sent as encoded");
    req
}

fn pb(body: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf ExportTraceServiceRequest")
}

fn by_kind<'a>(spans: &[&'a Span], kind: &str) -> &'a Span {
    spans
        .iter()
        .copied()
        .find(|sp| s(&sp.attributes, "langsmith.span.kind") == kind)
        .unwrap_or_else(|| panic!("no span of kind {kind}"))
}

#[tokio::test]
async fn posts_otlp_to_the_otel_endpoint_with_langsmith_headers_and_matches_the_golden_file() {
    let rx = Receiver::start().await;
    let exporter = exporter(json!({
        "apiKey": "lsv2_pt_secret",
        "endpoint": rx.url("/"),
        "project": "shop-prod",
        "workspaceId": "ws-123",
        "headers": {"X-Proxy-Token": "p-1", "Langsmith-Project": "not-this-one"}
    }));
    let g = generation(full_record());
    let req = deliver(&rx, exporter.as_ref(), &[TraceView::new(&g, ALL_GROUPS)]).await;

    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/otel/v1/traces");
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(req.header("x-api-key"), Some("lsv2_pt_secret"));
    assert_eq!(
        req.header("langsmith-project"),
        Some("shop-prod"),
        "the project field wins over a custom header"
    );
    assert_eq!(req.header("x-tenant-id"), Some("ws-123"));
    assert_eq!(req.header("x-proxy-token"), Some("p-1"));

    let decoded = pb(&req.body);
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 2);
    let llm = by_kind(&sp, "llm");
    let a = &llm.attributes;
    assert_eq!(s(a, "gen_ai.system"), "openai");
    assert_eq!(s(a, "langsmith.metadata.ls_provider"), "openai");
    assert_eq!(s(a, "langsmith.metadata.ls_model_name"), "gpt-4o");
    assert_eq!(s(a, "gen_ai.request.model"), "openai/gpt-4o");
    assert_eq!(i(a, "gen_ai.usage.input_tokens"), 120);
    assert_eq!(i(a, "gen_ai.usage.output_tokens"), 30);
    assert_eq!(i(a, "gen_ai.usage.total_tokens"), 150);
    assert_eq!(d(a, "gen_ai.usage.cost"), 0.00123);
    assert_eq!(d(a, "gen_ai.request.temperature"), 0.2);
    // Content as JSON LangSmith reads into inputs and outputs.
    let prompt: Value = serde_json::from_str(s(a, "gen_ai.prompt")).unwrap();
    assert_eq!(
        prompt["messages"][1]["content"],
        "Process this order: 2 widgets"
    );
    let completion: Value = serde_json::from_str(s(a, "gen_ai.completion")).unwrap();
    assert_eq!(completion["completion"], "Looking up the SKU.");
    assert!(!has(a, "tracecast.truncated"));
    // No custom metadata under the generic prefix: it is LangSmith metadata instead.
    assert!(!a.iter().any(|kv| kv.key.starts_with("trace.metadata.")));

    // Reasoning tokens where LangSmith reads them.
    assert_eq!(i(a, "gen_ai.usage.details.reasoning_tokens"), 8);

    // The golden files: the exact protobuf body, and its OTLP/JSON rendering for review.
    // Regenerate with UPDATE_GOLDEN=1 and review; test_langsmith.py checks langsmith.pb.
    golden::assert_bytes("langsmith.pb", "LangSmith body", req.body.as_ref());
    let mut rendered = serde_json::to_vec_pretty(&decoded).unwrap();
    rendered.push(b'\n');
    golden::assert_bytes("langsmith.json", "LangSmith body", &rendered);
}

#[tokio::test]
async fn every_supported_metadata_key_is_mapped() {
    let rx = Receiver::start().await;
    let exporter = exporter(json!({"apiKey": "k", "endpoint": rx.url("")}));

    // trace_id, trace_name, span_name, generation_name, parent_span_id: the full record.
    let g = generation(full_record());
    let view = TraceView::new(&g, TraceOptions::default());
    let req = deliver(&rx, exporter.as_ref(), &[view]).await;
    let decoded = pb(&req.body);
    let sp = spans(&decoded);
    let chain = by_kind(&sp, "chain");
    let llm = by_kind(&sp, "llm");
    // trace_id -> Trace ID (both runs share the trace id derived from it).
    assert_eq!(chain.trace_id, view.otlp_trace_id().to_vec());
    assert_eq!(llm.trace_id, chain.trace_id);
    assert_eq!(
        s(
            &decoded.resource_spans[0]
                .resource
                .as_ref()
                .unwrap()
                .attributes,
            "openrouter.trace.id"
        ),
        "order_processing_001"
    );
    // span_name -> Run Name of the intermediate (chain) run.
    assert_eq!(chain.name, "Extraction");
    assert_eq!(s(&chain.attributes, "langsmith.trace.name"), "Extraction");
    // generation_name -> Run Name of the LLM run.
    assert_eq!(llm.name, "Extract Order Details");
    assert_eq!(
        s(&llm.attributes, "langsmith.trace.name"),
        "Extract Order Details"
    );
    // trace_name -> on the top-most run.
    assert_eq!(
        s(&chain.attributes, "langsmith.metadata.trace_name"),
        "Order Processing Pipeline"
    );
    assert!(!has(&llm.attributes, "langsmith.metadata.trace_name"));
    // parent_span_id that is not a LangSmith run id (a UUID): never the OTLP parent (LangSmith
    // would hold the chain run for a parent it never gets, then drop it); the chain run is
    // the root and the parent is metadata. The LLM run is the chain's child.
    assert!(
        chain.parent_span_id.is_empty(),
        "no OTLP parent LangSmith never gets"
    );
    assert_eq!(
        s(&chain.attributes, "langsmith.metadata.parent_span_id"),
        "00f067aa0ba902b7"
    );
    assert!(!has(&chain.attributes, "langsmith.span.parent_id"));
    assert!(!has(&llm.attributes, "langsmith.metadata.parent_span_id"));
    assert_eq!(llm.parent_span_id, chain.span_id);

    // trace_name -> Run Name when the generation is itself the root run.
    let g = generation(json!({
        "id": "gen-root", "model": "openai/gpt-4o", "created_at": "2026-01-01T00:00:00Z",
        "trace": {"trace_id": "wf-9", "trace_name": "Root Run Name"}
    }));
    let req = deliver(
        &rx,
        exporter.as_ref(),
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    let decoded = pb(&req.body);
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 1);
    assert_eq!(sp[0].name, "Root Run Name");
    assert_eq!(
        s(&sp[0].attributes, "langsmith.trace.name"),
        "Root Run Name"
    );
    assert_eq!(s(&sp[0].attributes, "langsmith.span.kind"), "llm");
    assert!(sp[0].parent_span_id.is_empty(), "a root run");
}

#[tokio::test]
async fn a_run_id_parent_goes_in_the_langsmith_attributes_never_the_otlp_parent() {
    let rx = Receiver::start().await;
    let exporter = exporter(json!({"apiKey": "k", "endpoint": rx.url("")}));
    let trace = "0195f3c2-8d4e-7c1a-9b2f-3e4d5c6b7a89";
    let run = "0195f3c2-8d4f-7000-8000-00000000abcd";
    for span_name in [Some("Step"), None] {
        let mut record = json!({
            "id": "gen-linked", "model": "openai/gpt-4o", "created_at": "2026-01-01T13:37:42Z",
            "trace": {"trace_id": trace, "parent_span_id": run}
        });
        if let Some(name) = span_name {
            record["trace"]["span_name"] = json!(name);
        }
        let g = generation(record);
        let view = TraceView::new(&g, TraceOptions::default());
        let req = deliver(&rx, exporter.as_ref(), &[view]).await;
        let decoded = pb(&req.body);
        let sp = spans(&decoded);
        let ids: Vec<&[u8]> = sp.iter().map(|x| x.span_id.as_slice()).collect();
        for span in &sp {
            // Every OTLP parent is a span of this request.
            assert!(
                span.parent_span_id.is_empty() || ids.contains(&span.parent_span_id.as_slice()),
                "{span_name:?}: OTLP parent LangSmith never gets"
            );
            assert_eq!(s(&span.attributes, "langsmith.trace.id"), trace);
            assert!(!has(&span.attributes, "langsmith.metadata.parent_span_id"));
        }
        let top = sp.iter().find(|x| x.parent_span_id.is_empty()).unwrap();
        assert_eq!(s(&top.attributes, "langsmith.span.parent_id"), run);
        assert_eq!(
            sp.iter()
                .filter(|x| has(&x.attributes, "langsmith.span.parent_id"))
                .count(),
            1,
            "only the top-most run names the user's run"
        );
    }

    // A UUID parent in a trace that is not a UUID: LangSmith cannot place the run; metadata.
    let g = generation(json!({
        "id": "gen-unplaced", "model": "openai/gpt-4o", "created_at": "2026-01-01T13:37:42Z",
        "trace": {"trace_id": "wf-1", "parent_span_id": run}
    }));
    let req = deliver(
        &rx,
        exporter.as_ref(),
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    let decoded = pb(&req.body);
    let sp = spans(&decoded);
    assert!(sp[0].parent_span_id.is_empty());
    assert!(!has(&sp[0].attributes, "langsmith.span.parent_id"));
    assert!(!has(&sp[0].attributes, "langsmith.trace.id"));
    assert_eq!(
        s(&sp[0].attributes, "langsmith.metadata.parent_span_id"),
        run
    );
}

#[tokio::test]
async fn user_session_tags_and_custom_metadata() {
    let rx = Receiver::start().await;
    let exporter = exporter(json!({"apiKey": "k", "endpoint": rx.url("")}));
    let mut record = full_record();
    record["trace"]["tags"] = json!(["checkout", "beta,1", "a"]);
    record["trace"]["environment"] = json!("production");
    record["trace"]["user_id"] = json!("spoofed");
    let g = generation(record);
    let req = deliver(
        &rx,
        exporter.as_ref(),
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    let decoded = pb(&req.body);
    let sp = spans(&decoded);
    for span in &sp {
        let a = &span.attributes;
        // user -> User ID; session_id -> Session ID (LangSmith threads read metadata.session_id).
        assert_eq!(
            s(a, "langsmith.metadata.user_id"),
            "user_12345",
            "{}",
            span.name
        );
        assert_eq!(s(a, "langsmith.metadata.session_id"), "session_abc");
        assert_eq!(s(a, "user.id"), "user_12345");
        assert_eq!(s(a, "session.id"), "session_abc");
        // String arrays in metadata become comma-separated tags, in order, without repeats.
        assert_eq!(s(a, "langsmith.span.tags"), "a, b, checkout, beta 1");
    }
    let a = &by_kind(&sp, "llm").attributes;
    assert_eq!(s(a, "gen_ai.conversation.id"), "session_abc");
    // Custom metadata keys become LangSmith metadata, typed.
    assert_eq!(s(a, "langsmith.metadata.order_id"), "ORD-12345");
    assert_eq!(s(a, "langsmith.metadata.priority"), "high");
    assert_eq!(s(a, "langsmith.metadata.environment"), "production");
    assert_eq!(i(a, "langsmith.metadata.attempt"), 2);
    assert_eq!(d(a, "langsmith.metadata.score"), 0.75);
    assert!(b(a, "langsmith.metadata.vip"));
    assert_eq!(s(a, "langsmith.metadata.customer"), r#"{"tier":"gold"}"#);
    assert_eq!(s(a, "langsmith.metadata.labels"), r#"["a","b"]"#);
    assert!(!has(a, "langsmith.metadata.nothing"));
    // The request's user wins over a custom key of the same name.
    assert_eq!(s(a, "langsmith.metadata.user_id"), "user_12345");
}

#[tokio::test]
async fn privacy_mode_sends_no_content() {
    let rx = Receiver::start().await;
    let exporter = exporter(json!({"apiKey": "k", "endpoint": rx.url("")}));
    let g = generation(secret_record());
    let opts = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let req = deliver(&rx, exporter.as_ref(), &[TraceView::new(&g, opts)]).await;
    let text = String::from_utf8_lossy(&req.body);
    assert!(
        !text.contains("SECRET"),
        "content reached LangSmith: {text}"
    );
    let decoded = pb(&req.body);
    let a = &spans(&decoded)[0].attributes;
    for key in [
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.tool.definitions",
    ] {
        assert!(!has(a, key), "{key} in privacy mode");
    }
    // Everything else still goes.
    assert_eq!(i(a, "gen_ai.usage.input_tokens"), 3);
    assert_eq!(d(a, "gen_ai.usage.cost"), 0.5);
    assert_eq!(s(a, "langsmith.metadata.user_id"), "u-1");
    assert_eq!(s(a, "langsmith.metadata.session_id"), "s-1");
    assert_eq!(s(a, "langsmith.metadata.env"), "prod");
    assert_eq!(s(a, "langsmith.metadata.ls_model_name"), "claude-sonnet-4");
}

#[tokio::test]
async fn an_oversized_prompt_is_truncated_visibly() {
    let rx = Receiver::start().await;
    let exporter = exporter(json!({"apiKey": "k", "endpoint": rx.url("")}));
    let mut record = secret_record();
    let huge = "é".repeat(700 * 1024); // 1.4 MB of two-byte characters
    record["request"]["messages"] = json!([{"role": "user", "content": huge}]);
    // Any oversized string attribute is cut the same way, custom metadata included.
    record["trace"]["notes"] = json!("n".repeat(1200 * 1024));
    let g = generation(record);
    let req = deliver(
        &rx,
        exporter.as_ref(),
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    assert!(req.body.len() < 512 * 1024, "{} bytes", req.body.len());
    let decoded = pb(&req.body);
    let a = &spans(&decoded)[0].attributes;
    let marker: Value = serde_json::from_str(s(a, "gen_ai.prompt")).expect("valid JSON marker");
    assert_eq!(marker["truncated"], true);
    assert!(marker["original_bytes"].as_u64().unwrap() > 1024 * 1024);
    let preview = marker["preview"].as_str().unwrap();
    assert_eq!(
        marker["kept_bytes"].as_u64().unwrap() as usize,
        preview.len()
    );
    assert!(
        preview.starts_with(r#"{"messages":[{"content":"éé"#),
        "{}",
        &preview[..40]
    );
    let notes: Value = serde_json::from_str(s(a, "langsmith.metadata.notes")).unwrap();
    assert_eq!(notes["truncated"], true);
    assert_eq!(notes["original_bytes"], 1200 * 1024);
    assert_eq!(notes["kept_bytes"], 64 * 1024);
    assert!(b(a, "langsmith.metadata.truncated"));
    assert!(b(a, "tracecast.truncated"));
    // The small completion is untouched.
    let completion: Value = serde_json::from_str(s(a, "gen_ai.completion")).unwrap();
    assert_eq!(completion["completion"], "SECRET-ANSWER");
}

#[tokio::test]
async fn batches_are_one_request_within_the_limits() {
    let rx = Receiver::start().await;
    let exporter = exporter(json!({"apiKey": "k", "endpoint": rx.url("")}));
    let limits = exporter.limits();
    assert_eq!(limits.max_items, 100);
    assert_eq!(limits.max_bytes, 5 * 1024 * 1024);
    let a = generation(full_record());
    let b = generation(secret_record());
    let req = deliver(
        &rx,
        exporter.as_ref(),
        &[
            TraceView::new(&a, TraceOptions::default()),
            TraceView::new(&b, TraceOptions::default()),
        ],
    )
    .await;
    assert_eq!(pb(&req.body).resource_spans.len(), 2);
    assert!(rx.try_next().await.is_none(), "one request per batch");
    // Protobuf bodies are not assembled from shared JSON fragments.
    assert!(exporter.fragments().is_none());
}

#[tokio::test]
async fn outcomes_429_retry_after_401_pause_5xx_and_4xx() {
    let rx = Receiver::start().await;
    let exporter = exporter(json!({"apiKey": "k", "endpoint": rx.url("")}));
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();

    rx.reply(Reply::status(429).header("retry-after", "7"));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d == Duration::from_secs(7)
    ));
    rx.reply(Reply::status(401).body(r#"{"detail":"Invalid token"}"#));
    match exporter.send(&payload).await {
        Outcome::Unauthorized { status: 401, error } => {
            assert!(error.contains("Invalid token"), "{error}");
            assert!(!error.contains("lsv2"), "no secret in errors");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    rx.reply(Reply::status(403));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Unauthorized { status: 403, .. }
    ));
    rx.reply(Reply::status(503));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry {
            status: Some(503),
            ..
        }
    ));
    rx.reply(Reply::status(400).body("bad span"));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Rejected { status: Some(400), error } if error.contains("bad span")
    ));
    // A partial success is logged and counts as delivered (OTLP: do not retry).
    rx.reply(
        Reply::status(200)
            .header("content-type", "application/json")
            .body(r#"{"partialSuccess":{"rejectedSpans":"1","errorMessage":"too big"}}"#),
    );
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    for _ in 0..6 {
        rx.next().await;
    }
    let refused = build(
        DestinationType::Langsmith,
        &config(json!({"apiKey": "k", "endpoint": refused_url().await})),
        &ctx(),
    )
    .unwrap();
    assert!(matches!(
        refused.send(&payload).await,
        Outcome::Retry { status: None, .. }
    ));
}

#[tokio::test]
async fn test_connection_sends_an_empty_export_with_the_headers() {
    let rx = Receiver::start().await;
    let exporter = exporter(json!({
        "apiKey": "lsv2_pt_k", "endpoint": rx.url("/api/v1"), "project": "p", "headers": {"X-Extra": "1"}
    }));
    rx.reply(Reply::status(200).body("{}"));
    let ok = exporter.test_connection().await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.status, Some(200));
    assert_eq!(
        ok.message,
        "LangSmith accepted an empty OTLP export request (200)"
    );
    let req = rx.next().await;
    assert_eq!(req.path, "/api/v1/otel/v1/traces");
    assert!(
        req.body.is_empty(),
        "an empty export request is zero bytes of protobuf"
    );
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(req.header("x-api-key"), Some("lsv2_pt_k"));
    assert_eq!(req.header("langsmith-project"), Some("p"));
    assert_eq!(req.header("x-extra"), Some("1"));
    assert!(req.header("x-tenant-id").is_none());

    rx.reply(Reply::status(401));
    let check = exporter.test_connection().await;
    assert_eq!(
        (check.ok, check.status, check.message.as_str()),
        (false, Some(401), "LangSmith rejected the API key (401)")
    );
    rx.reply(Reply::status(403));
    let check = exporter.test_connection().await;
    assert_eq!(check.message, "LangSmith rejected the API key (403)");
    rx.reply(Reply::status(404));
    let check = exporter.test_connection().await;
    assert!(
        !check.ok && check.message.contains("check the endpoint"),
        "{check:?}"
    );
    for _ in 0..3 {
        rx.next().await;
    }

    let refused = build(
        DestinationType::Langsmith,
        &config(json!({"apiKey": "k", "endpoint": refused_url().await})),
        &ctx(),
    )
    .unwrap();
    let check = refused.test_connection().await;
    assert!(
        !check.ok && check.message.starts_with("LangSmith could not be reached"),
        "{check:?}"
    );
}

#[test]
fn config_defaults_and_errors() {
    // Defaults: the US endpoint and the "main" project.
    let e = langsmith::exporter(&config(json!({"apiKey": "k"})), &ctx()).unwrap();
    assert_eq!(
        e.http().url().as_str(),
        "https://api.smith.langchain.com/otel/v1/traces"
    );
    // A regional endpoint.
    let e = langsmith::exporter(
        &config(json!({"apiKey": "k", "endpoint": "https://eu.api.smith.langchain.com/"})),
        &ctx(),
    )
    .unwrap();
    assert_eq!(
        e.http().url().as_str(),
        "https://eu.api.smith.langchain.com/otel/v1/traces"
    );
    let err = |cfg: Value| match langsmith::exporter(&config(cfg), &ctx()) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err(json!({})).contains("apiKey is required"));
    let msg = err(json!({"apiKey": "lsv2\nsecret"}));
    assert!(msg.contains("apiKey") && !msg.contains("secret"), "{msg}");
    assert!(err(json!({"apiKey": "k", "endpoint": "not a url"})).contains("endpoint"));
    assert!(err(json!({"apiKey": "k", "project": "a\u{7f}b"})).contains("project"));
    assert!(err(json!({"apiKey": "k", "workspaceId": "a\nb"})).contains("workspaceId"));
    assert!(err(json!({"apiKey": "k", "headers": {"bad header": "x"}})).contains("headers"));
}
