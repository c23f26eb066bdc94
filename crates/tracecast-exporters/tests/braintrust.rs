//! The `braintrust` destination against a real HTTP receiver on 127.0.0.1 playing Braintrust's
//! OTLP endpoint and project API. Bodies are decoded with `opentelemetry-proto`'s own OTLP/JSON
//! types.

mod common;
use common::golden;
use common::setup::{self, ALL_GROUPS, config, ctx};

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tracecast_exporters::otlp::proto::trace::v1::Span;
use tracecast_exporters::{Exporter, Outcome, braintrust};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

const PROJECT: &str = "0f3a1c2e-5b6d-4e7f-8a9b-0c1d2e3f4a5b";

fn exporter(cfg: Value) -> Arc<dyn Exporter> {
    setup::exporter(DestinationType::Braintrust, cfg)
}

fn basic(rx: &Receiver) -> Arc<dyn Exporter> {
    exporter(json!({"apiKey": "bt-key", "projectId": PROJECT, "baseUrl": rx.url("")}))
}

async fn deliver(rx: &Receiver, exporter: &dyn Exporter, views: &[TraceView<'_>]) -> Captured {
    let payload = exporter.encode(views).expect("encodes");
    assert_eq!(payload.items, views.len());
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let req = rx.next().await;
    assert_eq!(req.body, payload.body, "the payload is sent as encoded");
    req
}

fn by_type<'a>(spans: &[&'a Span], ty: &str) -> &'a Span {
    spans
        .iter()
        .copied()
        .find(|sp| s(&sp.attributes, "braintrust.span_attributes.type") == ty)
        .unwrap_or_else(|| panic!("no span of type {ty}"))
}

fn json_attr(span: &Span, key: &str) -> Value {
    serde_json::from_str(s(&span.attributes, key))
        .unwrap_or_else(|e| panic!("{key} is not valid JSON: {e}"))
}

#[tokio::test]
async fn posts_otlp_with_bearer_and_parent_and_matches_the_golden_file() {
    let rx = Receiver::start().await;
    let exporter = exporter(json!({
        "apiKey": "sk-bt-secret",
        "projectId": PROJECT,
        "baseUrl": rx.url("/"),
        "headers": {"X-Proxy-Token": "p-1", "Authorization": "Bearer not-this-one"}
    }));
    let g = generation(full_record());
    let req = deliver(&rx, exporter.as_ref(), &[TraceView::new(&g, ALL_GROUPS)]).await;

    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/otel/v1/traces");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("authorization"),
        Some("Bearer sk-bt-secret"),
        "the apiKey field wins over a custom header"
    );
    assert_eq!(
        req.header("x-bt-parent"),
        Some(format!("project_id:{PROJECT}").as_str())
    );
    assert_eq!(req.header("x-proxy-token"), Some("p-1"));

    let decoded = decode(&req.body);
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 2);
    let llm = by_type(&sp, "llm");
    let a = &llm.attributes;
    // Input and output as JSON Braintrust parses into the row's input/output.
    let input = json_attr(llm, "braintrust.input_json");
    assert_eq!(input[0]["role"], "system");
    assert_eq!(input[1]["content"], "Process this order: 2 widgets");
    let output = json_attr(llm, "braintrust.output_json");
    assert_eq!(output[0]["message"]["content"], "Looking up the SKU.");
    assert_eq!(
        output[0]["message"]["tool_calls"][0]["function"]["name"],
        "lookup_sku"
    );
    let tools = json_attr(llm, "braintrust.metadata.tools");
    assert_eq!(tools[0]["function"]["name"], "lookup_sku");
    // Content goes once: not also as GenAI attributes.
    for key in [
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.tool.definitions",
    ] {
        assert!(!has(a, key), "{key} duplicated");
    }
    // Metrics: tokens, cached and reasoning tokens, costs (input/output with the cost group),
    // time to first token in seconds.
    assert_eq!(i(a, "braintrust.metrics.prompt_tokens"), 120);
    assert_eq!(i(a, "braintrust.metrics.completion_tokens"), 30);
    assert_eq!(i(a, "braintrust.metrics.tokens"), 150);
    assert_eq!(i(a, "braintrust.metrics.prompt_cached_tokens"), 100);
    assert_eq!(i(a, "braintrust.metrics.prompt_cache_creation_tokens"), 4);
    assert_eq!(i(a, "braintrust.metrics.completion_reasoning_tokens"), 8);
    assert_eq!(d(a, "braintrust.metrics.total_cost"), 0.00123);
    assert_eq!(d(a, "braintrust.metrics.prompt_cost"), 0.00083);
    assert_eq!(d(a, "braintrust.metrics.completion_cost"), 0.0004);
    assert_eq!(d(a, "braintrust.metrics.time_to_first_token"), 0.31025);
    // Model and provider.
    assert_eq!(s(a, "braintrust.metadata.model"), "openai/gpt-4o");
    assert_eq!(s(a, "braintrust.metadata.provider"), "OpenAI");
    assert_eq!(s(a, "gen_ai.request.model"), "openai/gpt-4o");
    assert!(!a.iter().any(|kv| kv.key.starts_with("trace.metadata.")));

    golden::assert_bytes("braintrust.json", "Braintrust body", req.body.as_ref());
}

#[tokio::test]
async fn every_supported_metadata_key_is_mapped() {
    let rx = Receiver::start().await;
    let exporter = basic(&rx);

    let g = generation(full_record());
    let view = TraceView::new(&g, TraceOptions::default());
    let req = deliver(&rx, exporter.as_ref(), &[view]).await;
    let decoded = decode(&req.body);
    let sp = spans(&decoded);
    let task = by_type(&sp, "task");
    let llm = by_type(&sp, "llm");
    // trace_id -> Span ID / Root Span ID: every span of the generation in the trace derived
    // from it.
    assert_eq!(task.trace_id, view.otlp_trace_id().to_vec());
    assert_eq!(llm.trace_id, task.trace_id);
    // span_name -> Name of the intermediate span.
    assert_eq!(task.name, "Extraction");
    // generation_name -> Name of the LLM span.
    assert_eq!(llm.name, "Extract Order Details");
    // trace_name -> on the top-most span's metadata.
    assert_eq!(
        s(&task.attributes, "braintrust.metadata.trace_name"),
        "Order Processing Pipeline"
    );
    assert!(!has(&llm.attributes, "braintrust.metadata.trace_name"));
    // Hierarchy: the LLM span under the intermediate one. The caller's parent span cannot be
    // in this trace (its id is derived from "order_processing_001"), so it is not sent as the
    // OTLP parent (an orphan Braintrust never lists); the task span is the root and carries it.
    assert_eq!(llm.parent_span_id, task.span_id);
    assert!(task.parent_span_id.is_empty(), "a root Braintrust lists");
    assert_eq!(
        s(&task.attributes, "braintrust.metadata.parent_span_id"),
        "00f067aa0ba902b7"
    );
    assert!(!has(&llm.attributes, "braintrust.metadata.parent_span_id"));

    // trace_name -> Name of a generation that is the root of its trace.
    let g = generation(json!({
        "id": "gen-root", "model": "openai/gpt-4o", "created_at": "2026-01-01T00:00:00Z",
        "trace": {"trace_id": "eval_run_456", "trace_name": "Summarization Eval", "eval_dataset": "news_articles"}
    }));
    let view = TraceView::new(&g, TraceOptions::default());
    let req = deliver(&rx, exporter.as_ref(), &[view]).await;
    let decoded = decode(&req.body);
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 1);
    assert_eq!(sp[0].name, "Summarization Eval");
    assert_eq!(sp[0].trace_id, view.otlp_trace_id().to_vec());
    assert!(sp[0].parent_span_id.is_empty());
    assert_eq!(
        s(&sp[0].attributes, "braintrust.metadata.eval_dataset"),
        "news_articles"
    );
}

#[tokio::test]
async fn user_session_tags_and_custom_metadata() {
    let rx = Receiver::start().await;
    let exporter = basic(&rx);
    let mut record = full_record();
    record["trace"]["tags"] = json!(["checkout", "a"]);
    record["trace"]["experiment_id"] = json!("exp_789");
    record["trace"]["session_id"] = json!("spoofed");
    record["trace"]["parent_span_id"] = Value::Null;
    let g = generation(record);
    let req = deliver(
        &rx,
        exporter.as_ref(),
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    let decoded = decode(&req.body);
    let sp = spans(&decoded);
    let task = by_type(&sp, "task");
    let llm = by_type(&sp, "llm");
    for span in [task, llm] {
        let a = &span.attributes;
        assert_eq!(s(a, "braintrust.metadata.user_id"), "user_12345");
        assert_eq!(s(a, "braintrust.metadata.session_id"), "session_abc");
    }
    // Tags on the root span only (where Braintrust keeps them), in order, without repeats.
    assert!(
        task.parent_span_id.is_empty(),
        "the intermediate span is the root"
    );
    assert_eq!(
        strings(&task.attributes, "braintrust.tags"),
        vec!["a", "b", "checkout"]
    );
    assert!(!has(&llm.attributes, "braintrust.tags"));
    let a = &llm.attributes;
    assert_eq!(s(a, "braintrust.metadata.order_id"), "ORD-12345");
    assert_eq!(s(a, "braintrust.metadata.experiment_id"), "exp_789");
    assert_eq!(i(a, "braintrust.metadata.attempt"), 2);
    assert_eq!(d(a, "braintrust.metadata.score"), 0.75);
    assert!(b(a, "braintrust.metadata.vip"));
    assert_eq!(s(a, "braintrust.metadata.customer"), r#"{"tier":"gold"}"#);
    assert!(!has(a, "braintrust.metadata.nothing"));
    // The request's session wins over a custom key of the same name (checked above).

    // A caller's span in the caller's own OpenTelemetry trace (Braintrust's SDK ids): linked,
    // so no span is a root and tags are not sent as tags.
    let mut record = full_record();
    record["trace"]["trace_id"] = json!("4bf92f3577b34da6a3ce929d0e0e4736");
    let g = generation(record);
    let req = deliver(
        &rx,
        exporter.as_ref(),
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    let decoded = decode(&req.body);
    let sp = spans(&decoded);
    assert_eq!(
        hex::encode(&by_type(&sp, "task").parent_span_id),
        "00f067aa0ba902b7"
    );
    assert_eq!(
        hex::encode(&sp[0].trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(sp.iter().all(|sp| !has(&sp.attributes, "braintrust.tags")));
    assert!(
        sp.iter()
            .all(|sp| !has(&sp.attributes, "braintrust.metadata.parent_span_id"))
    );

    // A parent that cannot be in the trace (a legacy UUID span id, or any id in a derived
    // trace): the task span is the root, with the tags and the parent as metadata.
    for parent in ["0195f3c2-8d4e-7c1a-9b2f-3e4d5c6b7a89", "00f067aa0ba902b7"] {
        let mut record = full_record();
        record["trace"]["parent_span_id"] = json!(parent);
        if parent.contains('-') {
            record["trace"]["trace_id"] = json!("4bf92f3577b34da6a3ce929d0e0e4736");
        }
        let g = generation(record);
        let req = deliver(
            &rx,
            exporter.as_ref(),
            &[TraceView::new(&g, TraceOptions::default())],
        )
        .await;
        let decoded = decode(&req.body);
        let sp = spans(&decoded);
        let task = by_type(&sp, "task");
        assert!(task.parent_span_id.is_empty(), "{parent}");
        assert_eq!(
            s(&task.attributes, "braintrust.metadata.parent_span_id"),
            parent
        );
        assert_eq!(strings(&task.attributes, "braintrust.tags"), vec!["a", "b"]);
    }
}

#[tokio::test]
async fn privacy_mode_sends_no_content() {
    let rx = Receiver::start().await;
    let exporter = basic(&rx);
    let g = generation(secret_record());
    let opts = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let req = deliver(&rx, exporter.as_ref(), &[TraceView::new(&g, opts)]).await;
    let text = String::from_utf8(req.body.to_vec()).unwrap();
    assert!(
        !text.contains("SECRET"),
        "content reached Braintrust: {text}"
    );
    let decoded = decode(&req.body);
    let a = &spans(&decoded)[0].attributes;
    for key in [
        "braintrust.input_json",
        "braintrust.output_json",
        "braintrust.metadata.tools",
        "gen_ai.prompt",
        "gen_ai.completion",
    ] {
        assert!(!has(a, key), "{key} in privacy mode");
    }
    assert_eq!(i(a, "braintrust.metrics.prompt_tokens"), 3);
    assert_eq!(d(a, "braintrust.metrics.total_cost"), 0.5);
    assert_eq!(s(a, "braintrust.metadata.user_id"), "u-1");
    assert_eq!(s(a, "braintrust.metadata.env"), "prod");
    assert_eq!(
        s(a, "braintrust.metadata.model"),
        "anthropic/claude-sonnet-4"
    );
}

#[tokio::test]
async fn an_oversized_output_is_truncated_visibly() {
    let rx = Receiver::start().await;
    let exporter = basic(&rx);
    let mut record = secret_record();
    let huge = "x".repeat(1536 * 1024);
    record["response"]["choices"][0]["message"]["content"] = json!(huge);
    let g = generation(record);
    let req = deliver(
        &rx,
        exporter.as_ref(),
        &[TraceView::new(&g, TraceOptions::default())],
    )
    .await;
    assert!(req.body.len() < 512 * 1024, "{} bytes", req.body.len());
    let decoded = decode(&req.body);
    let llm = spans(&decoded)[0];
    let marker = json_attr(llm, "braintrust.output_json");
    assert_eq!(marker["truncated"], true);
    assert!(marker["original_bytes"].as_u64().unwrap() > 1536 * 1024);
    assert!(
        marker["preview"]
            .as_str()
            .unwrap()
            .starts_with(r#"[{"finish_reason":"stop""#)
    );
    assert!(b(&llm.attributes, "braintrust.metadata.truncated"));
    assert!(b(&llm.attributes, "tracecast.truncated"));
    // The small input is untouched.
    assert_eq!(
        json_attr(llm, "braintrust.input_json")[0]["content"],
        "SECRET-PROMPT"
    );
}

#[tokio::test]
async fn batches_are_one_request_within_the_limits() {
    let rx = Receiver::start().await;
    let exporter = basic(&rx);
    assert_eq!(exporter.limits().max_items, 100);
    assert_eq!(exporter.limits().max_bytes, 5 * 1024 * 1024);
    let a = generation(full_record());
    let b = generation(secret_record());
    let views = [
        TraceView::new(&a, TraceOptions::default()),
        TraceView::new(&b, TraceOptions::default()),
    ];
    let req = deliver(&rx, exporter.as_ref(), &views).await;
    assert_eq!(decode(&req.body).resource_spans.len(), 2);
    assert!(rx.try_next().await.is_none(), "one request per batch");
    let frag = exporter.fragments().expect("OTLP/JSON fragments");
    assert_eq!(frag.key(), "otlp-json/braintrust");
    let pieces: Vec<_> = views.iter().map(|v| frag.fragment(v).unwrap()).collect();
    assert_eq!(frag.assemble(&pieces).body, req.body);
}

#[tokio::test]
async fn outcomes_429_retry_after_401_pause_5xx_and_4xx() {
    let rx = Receiver::start().await;
    let exporter = basic(&rx);
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    rx.reply(Reply::status(429).header("retry-after", "4"));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d == Duration::from_secs(4)
    ));
    rx.reply(Reply::status(401).body("Invalid API key"));
    match exporter.send(&payload).await {
        Outcome::Unauthorized { status: 401, error } => {
            assert!(
                error.contains("Invalid API key") && !error.contains("bt-key"),
                "{error}"
            )
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    rx.reply(Reply::status(403));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Unauthorized { status: 403, .. }
    ));
    rx.reply(Reply::status(500));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry {
            status: Some(500),
            ..
        }
    ));
    rx.reply(Reply::status(400).body("bad parent"));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Rejected { status: Some(400), error } if error.contains("bad parent")
    ));
    for _ in 0..5 {
        rx.next().await;
    }
    let refused = exporter_for_url(&refused_url().await);
    assert!(matches!(
        refused.send(&payload).await,
        Outcome::Retry { status: None, .. }
    ));
}

fn exporter_for_url(url: &str) -> Arc<dyn Exporter> {
    exporter(json!({"apiKey": "k", "projectId": PROJECT, "baseUrl": url}))
}

#[tokio::test]
async fn test_connection_reads_the_project() {
    let rx = Receiver::start().await;
    let exporter = exporter(json!({
        "apiKey": "sk-bt", "projectId": PROJECT, "baseUrl": rx.url("/v1"), "headers": {"X-Extra": "1"}
    }));
    rx.reply(Reply::status(200).body(&format!(r#"{{"id":"{PROJECT}","name":"Shop"}}"#)));
    let ok = exporter.test_connection().await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.status, Some(200));
    assert_eq!(
        ok.message,
        format!("Braintrust accepted the API key and found project \"Shop\" ({PROJECT}) (200)")
    );
    let req = rx.next().await;
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, format!("/v1/project/{PROJECT}"));
    assert_eq!(req.header("authorization"), Some("Bearer sk-bt"));
    assert_eq!(req.header("x-extra"), Some("1"));
    assert!(req.body.is_empty());

    rx.reply(Reply::status(401));
    let check = exporter.test_connection().await;
    assert_eq!(
        (check.ok, check.status, check.message.as_str()),
        (false, Some(401), "Braintrust rejected the API key (401)")
    );
    rx.reply(Reply::status(404));
    let check = exporter.test_connection().await;
    assert!(
        !check.ok && check.status == Some(404) && check.message.contains(PROJECT),
        "{check:?}"
    );
    rx.reply(Reply::status(502).body("upstream down"));
    let check = exporter.test_connection().await;
    assert_eq!(
        check.message,
        "Braintrust answered 502 to the test request: upstream down"
    );
    for _ in 0..3 {
        rx.next().await;
    }
    let check = exporter_for_url(&refused_url().await)
        .test_connection()
        .await;
    assert!(
        !check.ok && check.message.starts_with("Braintrust could not be reached"),
        "{check:?}"
    );
}

#[test]
fn config_defaults_and_errors() {
    let e = braintrust::exporter(
        &config(json!({"apiKey": "k", "projectId": "p 1/2"})),
        &ctx(),
    )
    .unwrap();
    assert_eq!(
        e.otlp().http().url().as_str(),
        "https://api.braintrust.dev/otel/v1/traces"
    );
    // The project id is one escaped path segment.
    assert_eq!(
        e.project_url().as_str(),
        "https://api.braintrust.dev/v1/project/p%201%2F2"
    );
    let e = braintrust::exporter(
        &config(json!({"apiKey": "k", "projectId": "p", "baseUrl": "https://api-eu.braintrust.dev/v1/"})),
        &ctx(),
    )
    .unwrap();
    assert_eq!(
        e.otlp().http().url().as_str(),
        "https://api-eu.braintrust.dev/otel/v1/traces"
    );
    let err = |cfg: Value| match braintrust::exporter(&config(cfg), &ctx()) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err(json!({"projectId": "p"})).contains("apiKey is required"));
    assert!(err(json!({"apiKey": "k"})).contains("projectId is required"));
    let msg = err(json!({"apiKey": "bt\nsecret", "projectId": "p"}));
    assert!(msg.contains("apiKey") && !msg.contains("secret"), "{msg}");
    assert!(err(json!({"apiKey": "k", "projectId": "a\nb"})).contains("projectId"));
    assert!(err(json!({"apiKey": "k", "projectId": "p", "baseUrl": "nope"})).contains("baseUrl"));
}
