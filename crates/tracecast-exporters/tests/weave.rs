//! The `weave` destination against a real HTTP receiver on 127.0.0.1 playing Weave's OTLP
//! endpoint. Bodies are decoded with `opentelemetry-proto`'s own prost types.

mod common;
use common::golden;
use common::setup::{ALL_GROUPS, ctx};

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::*;
use prost::Message;
use serde_json::{Map, Value, json};
use tracecast_exporters::otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use tracecast_exporters::otlp::proto::common::v1::KeyValue;
use tracecast_exporters::weave::exporter as weave_exporter;
use tracecast_exporters::{ExportError, Exporter, Outcome, build};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

fn config(base: &str) -> Map<String, Value> {
    json!({
        "apiKey": "wandb-KEY-0123456789",
        "entity": "acme",
        "project": "support-bot",
        "baseUrl": base,
        "headers": {"X-Proxy-Token": "px-1", "Content-Type": "text/plain"}
    })
    .as_object()
    .cloned()
    .unwrap()
}

fn weave(base: &str) -> Arc<dyn Exporter> {
    match build(DestinationType::Weave, &config(base), &ctx()) {
        Ok(e) => e,
        Err(e) => panic!("weave exporter: {e}"),
    }
}

fn pb(body: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf ExportTraceServiceRequest")
}

/// A JSON string attribute, parsed.
fn js(attrs: &[KeyValue], key: &str) -> Value {
    serde_json::from_str(s(attrs, key)).unwrap_or_else(|e| panic!("{key} is not JSON: {e}"))
}

/// No key may be a dotted prefix of another: Weave nests attributes by their dots and rejects
/// such spans (`AttributePathConflictError`).
fn assert_no_path_conflicts(attrs: &[KeyValue]) {
    for a in attrs {
        let prefix = format!("{}.", a.key);
        let clash: Vec<_> = attrs
            .iter()
            .filter(|b| b.key.starts_with(&prefix))
            .collect();
        assert!(
            clash.is_empty(),
            "{} is a prefix of {:?}",
            a.key,
            clash[0].key
        );
    }
}

#[tokio::test]
async fn posts_otlp_protobuf_with_weave_auth_and_custom_headers() {
    let rx = Receiver::start().await;
    let exporter = weave(&rx.url("/traces/"));
    let g = generation(full_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, ALL_GROUPS)])
        .expect("encodes");
    assert_eq!(payload.content_type, "application/x-protobuf");
    assert!(
        exporter.fragments().is_none(),
        "protobuf bodies are not shared fragments"
    );
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);

    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/traces/otel/v1/traces");
    let basic = base64::engine::general_purpose::STANDARD.encode("api:wandb-KEY-0123456789");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(req.header("wandb-api-key"), Some("wandb-KEY-0123456789"));
    assert_eq!(req.header("project_id"), Some("acme/support-bot"));
    assert_eq!(req.header("x-proxy-token"), Some("px-1"));
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(req.body, payload.body);

    // The golden files: the exact protobuf body, and its OTLP/JSON rendering for review.
    // Regenerate with UPDATE_GOLDEN=1 and review the diff of weave.json; tests/vendors/
    // test_weave.py runs weave.pb through Weave's own OTLP ingestion.
    let decoded = pb(&req.body);
    golden::assert_bytes("weave.pb", "Weave payload", &req.body);
    let mut rendered = serde_json::to_vec_pretty(&decoded).unwrap();
    rendered.push(b'\n');
    golden::assert_bytes("weave.json", "Weave payload", &rendered);
}

#[tokio::test]
async fn maps_every_supported_metadata_key_into_weave_calls() {
    let rx = Receiver::start().await;
    let exporter = weave(&rx.url(""));
    let g = generation(full_record());
    let payload = exporter.encode(&[TraceView::new(&g, ALL_GROUPS)]).unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let req = pb(&rx.next().await.body);

    let resource = &req.resource_spans[0].resource.as_ref().unwrap().attributes;
    assert_eq!(s(resource, "wandb.entity"), "acme");
    assert_eq!(s(resource, "wandb.project"), "support-bot");

    let sp = spans(&req);
    assert_eq!(sp.len(), 2);
    let (mid, llm) = (sp[0], sp[1]);
    // generation_name -> op_name (the span name); span_name -> a parent call.
    assert_eq!(llm.name, "Extract Order Details");
    assert_eq!(mid.name, "Extraction");
    assert_eq!(llm.parent_span_id, mid.span_id);
    // parent_span_id: a Weave call id is a UUID, or a 16-hex span id inside the user's own
    // 32-hex trace; this one cannot be in the (derived) trace, so the parent call is a root
    // (Weave's call list shows roots) and the parent is in its attributes.
    assert!(mid.parent_span_id.is_empty(), "a root call");
    assert_eq!(
        js(&mid.attributes, "wandb.attributes")["parent_span_id"],
        "00f067aa0ba902b7"
    );

    let a = &llm.attributes;
    assert_no_path_conflicts(a);
    assert_no_path_conflicts(&mid.attributes);
    // trace_id -> openrouter_trace_id; user -> user_id; session_id -> session_id; custom keys
    // merged into the call's attributes (Weave merges `wandb.attributes`).
    let wandb = js(a, "wandb.attributes");
    assert_eq!(wandb["openrouter_trace_id"], "order_processing_001");
    assert_eq!(
        wandb["openrouter_observation_id"],
        "gen-1767225600-AbCdEfGhIjKlMnOpQrSt"
    );
    assert_eq!(wandb["user_id"], "user_12345");
    assert_eq!(wandb["session_id"], "session_abc");
    assert_eq!(wandb["order_id"], "ORD-12345");
    assert_eq!(wandb["attempt"], 2);
    assert_eq!(wandb["customer"], json!({"tier": "gold"}));
    assert!(wandb.get("nothing").is_none());
    assert_eq!(
        wandb["cost"],
        json!({"total": 0.00123, "input": 0.00083, "output": 0.0004})
    );
    assert_eq!(wandb["openrouter"]["finish_reasons"], json!(["tool_calls"]));
    assert_eq!(wandb["openrouter"]["is_byok"], false);
    let mid_wandb = js(&mid.attributes, "wandb.attributes");
    assert_eq!(mid_wandb["user_id"], "user_12345");
    assert_eq!(mid_wandb["openrouter_trace_id"], "order_processing_001");
    // Custom metadata is not duplicated as trace.metadata.* attributes.
    assert!(!a.iter().any(|kv| kv.key.starts_with("trace.metadata.")));

    // Inputs: messages, tools, model and model parameters.
    let inputs = js(a, "inputs");
    assert_eq!(inputs["messages"][0]["role"], "system");
    assert_eq!(inputs["tools"][0]["function"]["name"], "lookup_sku");
    assert_eq!(inputs["model"], "openai/gpt-4o");
    assert_eq!(inputs["temperature"], 0.2);
    assert_eq!(inputs["max_tokens"], 256);
    assert_eq!(inputs["top_p"], 0.9);
    assert!(!has(a, "gen_ai.prompt") && !has(a, "gen_ai.tool.definitions"));
    // Output.
    let output = js(a, "output");
    assert_eq!(output["completion"], "Looking up the SKU.");
    assert_eq!(output["tool_calls"][0]["id"], "call_1");
    assert!(!has(a, "gen_ai.completion"));
    // Usage (summary), model, thread.
    assert_eq!(i(a, "gen_ai.usage.prompt_tokens"), 120);
    assert_eq!(i(a, "gen_ai.usage.completion_tokens"), 30);
    assert_eq!(i(a, "llm.usage.total_tokens"), 150);
    assert_eq!(i(a, "gen_ai.usage.cache_read.input_tokens"), 100);
    assert_eq!(s(a, "gen_ai.response.model"), "openai/gpt-4o-2024-08-06");
    assert_eq!(s(a, "gen_ai.conversation.id"), "session_abc");
    assert!(!has(a, "gen_ai.usage.input_tokens.cached"));
}

#[tokio::test]
async fn trace_name_is_the_op_name_of_a_root_call() {
    let rx = Receiver::start().await;
    let exporter = weave(&rx.url(""));
    let mut r = secret_record();
    r["trace"] =
        json!({"trace_name": "Creative Writing Agent", "a": 1, "a.b": 2, "x.y": {"z": true}});
    // A request parameter `choice` would become `gen_ai.request.choice`, a dotted prefix of
    // `gen_ai.request.choice.count` (from `n`): the shorter one is dropped.
    r["request"]["n"] = json!(2);
    r["request"]["choice"] = json!("x");
    let g = generation(r);
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let req = pb(&rx.next().await.body);
    let sp = spans(&req);
    assert_eq!(sp.len(), 1);
    assert_eq!(sp[0].name, "Creative Writing Agent");
    assert!(
        !has(&sp[0].attributes, "wandb.display_name"),
        "op_name is the trace name already"
    );
    assert_no_path_conflicts(&sp[0].attributes);
    assert_eq!(i(&sp[0].attributes, "gen_ai.request.choice.count"), 2);
    assert!(!has(&sp[0].attributes, "gen_ai.request.choice"));
    // Dotted custom keys travel inside the wandb.attributes JSON, where they cannot clash.
    let wandb = js(&sp[0].attributes, "wandb.attributes");
    assert_eq!(wandb["a"], 1);
    assert_eq!(wandb["a.b"], 2);
    // generation_name wins when given.
    let mut r = secret_record();
    r["trace"] = json!({"trace_name": "T", "generation_name": "Poem"});
    let g = generation(r);
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let req = pb(&rx.next().await.body);
    let sp = spans(&req);
    assert_eq!(sp[0].name, "Poem");
    // The trace name is the call's display name in Weave's call list, and an attribute.
    assert_eq!(s(&sp[0].attributes, "wandb.display_name"), "T");
    assert_eq!(js(&sp[0].attributes, "wandb.attributes")["trace_name"], "T");
    assert_no_path_conflicts(&sp[0].attributes);
}

#[tokio::test]
async fn only_a_parent_weave_can_have_is_sent_as_the_parent_call() {
    let rx = Receiver::start().await;
    let exporter = weave(&rx.url(""));
    let hex_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    for (trace_id, parent, linked) in [
        (hex_trace, "00f067aa0ba902b7", true),
        (hex_trace, "0195f3c2-8d4e-7c1a-9b2f-3e4d5c6b7a89", false),
        ("wf-1", "00f067aa0ba902b7", false),
    ] {
        let g = generation(json!({
            "id": "gen-p", "model": "openai/gpt-4o", "created_at": "2026-01-01T13:37:42Z",
            "trace": {"trace_id": trace_id, "parent_span_id": parent}
        }));
        let payload = exporter
            .encode(&[TraceView::new(&g, TraceOptions::default())])
            .unwrap();
        assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
        let req = pb(&rx.next().await.body);
        let call = spans(&req)[0];
        let wandb = js(&call.attributes, "wandb.attributes");
        if linked {
            assert_eq!(hex::encode(&call.parent_span_id), parent);
            assert!(wandb.get("parent_span_id").is_none());
        } else {
            assert!(call.parent_span_id.is_empty(), "{trace_id} {parent}");
            assert_eq!(wandb["parent_span_id"], parent);
        }
    }
}

#[tokio::test]
async fn privacy_mode_sends_no_content_but_keeps_parameters_usage_and_metadata() {
    let rx = Receiver::start().await;
    let exporter = weave(&rx.url(""));
    let g = generation(secret_record());
    let opts = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let payload = exporter.encode(&[TraceView::new(&g, opts)]).unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let body = rx.next().await.body;
    assert!(
        !body.windows(6).any(|w| w == b"SECRET"),
        "content reached Weave: {}",
        String::from_utf8_lossy(&body)
    );
    let req = pb(&body);
    let a = &spans(&req)[0].attributes;
    assert_eq!(
        js(a, "inputs"),
        json!({"model": "anthropic/claude-sonnet-4", "temperature": 0.5})
    );
    assert!(!has(a, "output"));
    assert_eq!(i(a, "gen_ai.usage.prompt_tokens"), 3);
    let wandb = js(a, "wandb.attributes");
    assert_eq!(wandb["env"], "prod");
    assert_eq!(wandb["user_id"], "u-1");
    assert_eq!(wandb["cost"]["total"], 0.5);
    assert_eq!(wandb["openrouter"]["tool_call_names"], json!(["lookup"]));
}

#[tokio::test]
async fn oversized_content_is_replaced_by_a_visible_marker() {
    let rx = Receiver::start().await;
    let exporter = weave(&rx.url(""));
    let mut r = secret_record();
    r["response"]["choices"][0]["message"]["content"] = json!("y".repeat(5 * 1024 * 1024));
    let g = generation(r);
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert!(
        payload.body.len() < 1024 * 1024,
        "the big output is not sent"
    );
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let req = pb(&rx.next().await.body);
    let a = &spans(&req)[0].attributes;
    let out = js(a, "output");
    assert_eq!(out["truncated"], true);
    assert!(out["original_bytes"].as_u64().unwrap() > 5 * 1024 * 1024);
    let wandb = js(a, "wandb.attributes");
    assert_eq!(wandb["truncated"], true);
    assert_eq!(wandb["truncated_fields"], json!(["output"]));
    assert_eq!(js(a, "inputs")["messages"][0]["content"], "SECRET-PROMPT");
}

#[tokio::test]
async fn outcomes_follow_the_otlp_answers() {
    let rx = Receiver::start().await;
    let exporter = weave(&rx.url(""));
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();

    rx.reply(Reply::status(429).header("retry-after", "12"));
    match exporter.send(&payload).await {
        Outcome::Retry {
            status: Some(429),
            retry_after,
            ..
        } => assert_eq!(retry_after, Some(Duration::from_secs(12))),
        other => panic!("expected a retry, got {other:?}"),
    }
    rx.reply(Reply::status(401).body("invalid api key"));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Unauthorized { status: 401, .. }
    ));
    rx.reply(Reply::status(403));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Unauthorized { status: 403, .. }
    ));
    rx.reply(Reply::status(400).body("bad span"));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Rejected {
            status: Some(400),
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
    // A 200 with a partialSuccess (spans Weave rejected) is delivered: OTLP says not to retry.
    rx.reply(
        Reply::status(200)
            .header("content-type", "application/json")
            .body(r#"{"partialSuccess":{"rejectedSpans":"1","errorMessage":"Rejected span"}}"#),
    );
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
}

#[tokio::test]
async fn test_connection_sends_an_empty_export_request() {
    let rx = Receiver::start().await;
    let exporter = weave(&rx.url(""));
    let check = exporter.test_connection().await;
    assert!(check.ok, "{check:?}");
    assert!(
        check.message.starts_with("W&B Weave accepted"),
        "{}",
        check.message
    );
    let req = rx.next().await;
    assert_eq!(req.path, "/otel/v1/traces");
    assert!(
        req.body.is_empty(),
        "an empty protobuf request is zero bytes"
    );
    assert_eq!(req.header("project_id"), Some("acme/support-bot"));
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));

    rx.reply(Reply::status(401));
    let check = exporter.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.message, "W&B Weave rejected the API key (401)");
    rx.reply(Reply::status(404));
    let check = exporter.test_connection().await;
    assert!(
        !check.ok && check.message.contains("baseUrl"),
        "{}",
        check.message
    );

    let exporter = weave(refused_url().await.trim_end_matches("/v1/traces"));
    let check = exporter.test_connection().await;
    assert!(!check.ok && check.status.is_none());
    assert!(check.message.starts_with("W&B Weave could not be reached"));
}

#[test]
fn base_url_defaults_and_config_errors_name_the_field() {
    let mut cfg = config("x");
    cfg.remove("baseUrl");
    let e = weave_exporter(&cfg, &ctx()).unwrap();
    assert_eq!(
        e.http().url().as_str(),
        "https://trace.wandb.ai/otel/v1/traces"
    );
    let e = weave_exporter(&config("https://acme.wandb.io/traces/"), &ctx()).unwrap();
    assert_eq!(
        e.http().url().as_str(),
        "https://acme.wandb.io/traces/otel/v1/traces"
    );
    for field in ["apiKey", "entity", "project"] {
        let mut cfg = config("https://trace.wandb.ai");
        cfg.remove(field);
        match weave_exporter(&cfg, &ctx()) {
            Err(ExportError::Config(msg)) => assert!(msg.contains(field), "{msg}"),
            Err(e) => panic!("{field}: unexpected error {e}"),
            Ok(_) => panic!("{field}: accepted without it"),
        }
    }
    match weave_exporter(&config("not a url"), &ctx()) {
        Err(ExportError::Config(msg)) => assert!(msg.contains("baseUrl"), "{msg}"),
        _ => panic!("a bad baseUrl was accepted"),
    }
}
