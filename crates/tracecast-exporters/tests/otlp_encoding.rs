//! The shared OTLP encoder, checked on what it produces: OTLP/JSON validity, hierarchy, names,
//! attributes, privacy mode, metadata groups, errors, dialect hooks and protobuf.

mod common;
use common::setup::ALL_GROUPS;

use std::borrow::Cow;
use std::time::Instant;

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracecast_exporters::otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use tracecast_exporters::otlp::proto::trace::v1::Span;
use tracecast_exporters::otlp::{
    self, AttributeKey, Attributes, DefaultDialect, Element, OtlpDialect, OtlpEncoding, SpanRole,
    SpanSlot, keys,
};
use tracecast_model::generation::Generation;
use tracecast_model::trace::{TraceOptions, TraceView};

fn encode_with(g: &Generation, opts: TraceOptions) -> (Vec<u8>, ExportTraceServiceRequest) {
    let view = TraceView::new(g, opts);
    let payload = otlp::encode(&[view], &DefaultDialect, OtlpEncoding::Json).expect("encodes");
    assert_eq!(payload.content_type, "application/json");
    assert_eq!(payload.items, 1);
    let body = payload.body.to_vec();
    let req = decode(&body);
    (body, req)
}

fn sha_prefix(s: &str, n: usize) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..n])
}

fn with(extra: Value) -> Generation {
    let mut v = json!({"id": "gen-1", "model": "openai/gpt-4o", "created_at": "2026-01-01T00:00:00Z", "latency": 1000.0});
    if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    generation(v)
}

#[test]
fn json_is_valid_otlp_json() {
    let g = generation(full_record());
    let (body, req) = encode_with(&g, ALL_GROUPS);
    let raw: Value = serde_json::from_slice(&body).unwrap();

    // Round trip through opentelemetry-proto's own types gives back the same message.
    let view = TraceView::new(&g, ALL_GROUPS);
    assert_eq!(req, otlp::export_request(&[view], &DefaultDialect));

    let rs = &raw["resourceSpans"][0];
    assert!(rs["resource"]["attributes"].is_array());
    let span = &rs["scopeSpans"][0]["spans"][1];
    // Hex ids in lower case, of the right length.
    let is_hex = |v: &Value, len: usize| {
        v.as_str().is_some_and(|s| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    };
    assert!(is_hex(&span["traceId"], 32), "{}", span["traceId"]);
    assert!(is_hex(&span["spanId"], 16), "{}", span["spanId"]);
    assert!(
        is_hex(&span["parentSpanId"], 16),
        "{}",
        span["parentSpanId"]
    );
    // u64 nanos as decimal strings.
    assert_eq!(span["startTimeUnixNano"], "1767274662250000000");
    assert_eq!(span["endTimeUnixNano"], "1767274663773500000");
    // Enums as integers.
    assert_eq!(span["kind"], 3);
    assert_eq!(span["status"]["code"], 1);
    assert_eq!(rs["scopeSpans"][0]["spans"][0]["kind"], 1);
    // intValue as a decimal string, doubleValue as a number, arrays as arrayValue.
    let attr = |key: &str| {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv["key"] == key)
            .map(|kv| kv["value"].clone())
            .unwrap_or_else(|| panic!("no {key}"))
    };
    assert_eq!(
        attr("gen_ai.usage.input_tokens"),
        json!({"intValue": "120"})
    );
    assert_eq!(attr("gen_ai.usage.cost"), json!({"doubleValue": 0.00123}));
    assert_eq!(attr("openrouter.streamed"), json!({"boolValue": true}));
    assert_eq!(
        attr("gen_ai.response.finish_reasons"),
        json!({"arrayValue": {"values": [{"stringValue": "tool_calls"}]}})
    );
    // Every key is lowerCamelCase: no snake_case keys anywhere in the structure.
    fn check_keys(v: &Value, path: &str) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    assert!(
                        !k.contains('_')
                            && k.chars().next().is_some_and(|c| c.is_ascii_lowercase()),
                        "{path}.{k} is not lowerCamelCase"
                    );
                    // Attribute keys are data, not structure.
                    if k != "key" {
                        check_keys(v, &format!("{path}.{k}"));
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| check_keys(v, path)),
            _ => {}
        }
    }
    check_keys(&raw, "");
}

#[test]
fn empty_request_constant_is_what_the_crate_serialises() {
    let empty = ExportTraceServiceRequest::default();
    assert_eq!(
        serde_json::to_string(&empty).unwrap(),
        otlp::EMPTY_REQUEST_JSON
    );
    let payload = otlp::encode(&[], &DefaultDialect, OtlpEncoding::Json).unwrap();
    assert_eq!(&payload.body[..], otlp::EMPTY_REQUEST_JSON.as_bytes());
    assert_eq!(payload.items, 0);
}

#[test]
fn resource_carries_service_and_trace_key() {
    let g = generation(full_record());
    let (_, req) = encode_with(&g, TraceOptions::default());
    assert_eq!(req.resource_spans.len(), 1);
    let rs = &req.resource_spans[0];
    let res = &rs.resource.as_ref().unwrap().attributes;
    assert_eq!(s(res, "service.name"), "openrouter");
    assert_eq!(s(res, "service.version"), "1.0.0");
    assert_eq!(s(res, "openrouter.trace.id"), "order_processing_001");
    assert_eq!(res.len(), 3);
    assert_eq!(rs.scope_spans.len(), 1);
    assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "openrouter");

    // Without trace_id the trace key is the generation id.
    let g = with(json!({}));
    let (_, req) = encode_with(&g, TraceOptions::default());
    let res = &req.resource_spans[0].resource.as_ref().unwrap().attributes;
    assert_eq!(s(res, "openrouter.trace.id"), "gen-1");
}

#[test]
fn hierarchy_with_span_name_and_parent() {
    let g = generation(full_record());
    let (_, req) = encode_with(&g, TraceOptions::default());
    let sp = spans(&req);
    assert_eq!(sp.len(), 2);
    let (mid, generation_span) = (sp[0], sp[1]);
    let trace_id = sha_prefix("order_processing_001", 16);
    assert_eq!(hex::encode(&mid.trace_id), trace_id);
    assert_eq!(hex::encode(&generation_span.trace_id), trace_id);
    // The generation span id is the first 8 bytes of SHA-256 of the generation id.
    assert_eq!(
        hex::encode(&generation_span.span_id),
        sha_prefix("gen-1767225600-AbCdEfGhIjKlMnOpQrSt", 8)
    );
    // Intermediate span: derived id, parent = the caller's span (hex kept verbatim).
    let view = TraceView::new(&g, TraceOptions::default());
    assert_eq!(
        mid.span_id,
        view.otlp_intermediate_span_id().unwrap().to_vec()
    );
    assert_eq!(hex::encode(&mid.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(generation_span.parent_span_id, mid.span_id);
    // Names and kinds.
    assert_eq!(mid.name, "Extraction");
    assert_eq!(generation_span.name, "Extract Order Details");
    assert_eq!(mid.kind, 1, "INTERNAL");
    assert_eq!(generation_span.kind, 3, "CLIENT");
    // The trace name rides on the top-most span.
    assert_eq!(
        s(&mid.attributes, "openrouter.trace.name"),
        "Order Processing Pipeline"
    );
    assert!(!has(&generation_span.attributes, "openrouter.trace.name"));
    assert_eq!(s(&mid.attributes, "openrouter.observation.type"), "span");
    assert_eq!(
        s(&generation_span.attributes, "openrouter.observation.type"),
        "generation"
    );
    assert_eq!(s(&mid.attributes, "user.id"), "user_12345");
    assert_eq!(s(&mid.attributes, "session.id"), "session_abc");
    // Same timing on both.
    assert_eq!(
        mid.start_time_unix_nano,
        generation_span.start_time_unix_nano
    );
    assert_eq!(mid.end_time_unix_nano, generation_span.end_time_unix_nano);
}

#[test]
fn hierarchy_variants() {
    // Only a parent span id, not hex: derived; the generation span is top-most.
    let g = with(json!({"trace": {"trace_id": "t-1", "parent_span_id": "my-app-span"}}));
    let (_, req) = encode_with(&g, TraceOptions::default());
    let sp = spans(&req);
    assert_eq!(sp.len(), 1);
    assert_eq!(
        hex::encode(&sp[0].parent_span_id),
        sha_prefix("my-app-span", 8)
    );
    assert_eq!(hex::encode(&sp[0].trace_id), sha_prefix("t-1", 16));
    assert_eq!(
        s(&sp[0].attributes, "openrouter.trace.name"),
        "openai/gpt-4o"
    );
    // Has a parent: not a root, so it keeps its generation name (the model).
    assert_eq!(sp[0].name, "openai/gpt-4o");

    // A 32-hex trace id is used as is.
    let g = with(json!({"trace": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}}));
    let (_, req) = encode_with(&g, TraceOptions::default());
    assert_eq!(
        hex::encode(&spans(&req)[0].trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );

    // span_name without parent: the intermediate span is a root.
    let g = with(json!({"trace": {"span_name": "Step", "trace_name": "Doc"}}));
    let (_, req) = encode_with(&g, TraceOptions::default());
    let sp = spans(&req);
    assert_eq!(sp.len(), 2);
    assert!(sp[0].parent_span_id.is_empty());
    assert_eq!(sp[0].name, "Step");
    assert_eq!(s(&sp[0].attributes, "openrouter.trace.name"), "Doc");
    assert_eq!(sp[1].parent_span_id, sp[0].span_id);
    assert_eq!(sp[1].name, "openai/gpt-4o");

    // Two calls sharing trace id and span name share the intermediate span.
    let g2 = generation(
        json!({"id": "gen-2", "model": "m", "created_at": "2026-01-01T00:00:00Z", "trace": {"span_name": "Step", "trace_id": "gen-1"}}),
    );
    let (_, req2) = encode_with(&g2, TraceOptions::default());
    let (_, req1) = encode_with(
        &with(json!({"trace": {"span_name": "Step"}})),
        TraceOptions::default(),
    );
    assert_eq!(spans(&req1)[0].span_id, spans(&req2)[0].span_id);
    assert_ne!(spans(&req1)[1].span_id, spans(&req2)[1].span_id);
}

#[test]
fn root_generation_names() {
    let name = |trace: Value| {
        let g = with(json!({ "trace": trace }));
        let (_, req) = encode_with(&g, TraceOptions::default());
        let sp = spans(&req);
        assert_eq!(sp.len(), 1);
        assert!(sp[0].parent_span_id.is_empty());
        sp[0].name.clone()
    };
    // Root without names: the model.
    assert_eq!(name(json!({})), "openai/gpt-4o");
    // Root with only a trace name: the trace name.
    assert_eq!(name(json!({"trace_name": "Chat Handler"})), "Chat Handler");
    // Its own generation name wins.
    assert_eq!(
        name(json!({"trace_name": "Chat Handler", "generation_name": "Generate Response"})),
        "Generate Response"
    );
}

#[test]
fn gen_ai_attributes() {
    let g = generation(full_record());
    let (_, req) = encode_with(&g, TraceOptions::default());
    let span: &Span = spans(&req)[1];
    let a = &span.attributes;
    assert_eq!(s(a, "gen_ai.operation.name"), "chat");
    assert_eq!(s(a, "gen_ai.system"), "openai");
    assert_eq!(s(a, "gen_ai.provider.name"), "openai");
    assert_eq!(s(a, "gen_ai.request.model"), "openai/gpt-4o");
    assert_eq!(s(a, "gen_ai.response.model"), "openai/gpt-4o-2024-08-06");
    assert_eq!(
        s(a, "gen_ai.response.id"),
        "gen-1767225600-AbCdEfGhIjKlMnOpQrSt"
    );
    assert_eq!(strings(a, "gen_ai.response.finish_reasons"), ["tool_calls"]);
    assert_eq!(s(a, "gen_ai.response.finish_reason"), "tool_calls");
    for (key, want) in [
        ("gen_ai.usage.input_tokens", 120),
        ("gen_ai.usage.prompt_tokens", 120),
        ("gen_ai.usage.output_tokens", 30),
        ("gen_ai.usage.completion_tokens", 30),
        ("gen_ai.usage.total_tokens", 150),
        ("gen_ai.usage.cache_read.input_tokens", 100),
        ("gen_ai.usage.input_tokens.cached", 100),
        ("gen_ai.usage.cache_creation.input_tokens", 4),
        ("gen_ai.usage.input_tokens.cache_write", 4),
        ("gen_ai.usage.input_tokens.audio", 1),
        ("gen_ai.usage.reasoning.output_tokens", 8),
        ("gen_ai.usage.output_tokens.reasoning", 8),
        ("gen_ai.usage.output_tokens.audio", 2),
        ("gen_ai.usage.output_tokens.image", 3),
        ("gen_ai.request.max_tokens", 256),
        ("gen_ai.request.seed", 7),
        ("gen_ai.request.choice.count", 1),
    ] {
        assert_eq!(i(a, key), want, "{key}");
    }
    assert_eq!(d(a, "gen_ai.usage.cost"), 0.00123);
    assert_eq!(d(a, "gen_ai.usage.total_cost"), 0.00123);
    assert_eq!(d(a, "gen_ai.request.temperature"), 0.2);
    assert_eq!(d(a, "gen_ai.request.top_p"), 0.9);
    assert_eq!(strings(a, "gen_ai.request.stop_sequences"), ["END"]);
    assert!(!has(a, "gen_ai.request.model_parameters"));
    assert!(!has(a, "gen_ai.request.n"));
    assert_eq!(s(a, "user.id"), "user_12345");
    assert_eq!(s(a, "session.id"), "session_abc");
    assert_eq!(s(a, "gen_ai.conversation.id"), "session_abc");
    assert_eq!(s(a, "openrouter.provider_name"), "OpenAI");
    assert_eq!(s(a, "openrouter.api_type"), "completions");
    assert_eq!(s(a, "openrouter.native_finish_reason"), "tool_calls");
    assert!(b(a, "openrouter.streamed"));
    assert!(!b(a, "openrouter.cancelled"));
    assert!(b(a, "openrouter.has_tools"));
    assert_eq!(strings(a, "openrouter.tool_call_names"), ["lookup_sku"]);
    assert_eq!(d(a, "openrouter.latency_ms"), 1523.5);
    assert_eq!(d(a, "openrouter.generation_time_ms"), 1400.0);
    assert_eq!(d(a, "openrouter.time_to_first_token_ms"), 310.25);
    assert_eq!(d(a, "openrouter.moderation_latency_ms"), 12.0);
    // Content, parsed back.
    let prompt: Value = serde_json::from_str(s(a, "gen_ai.prompt")).unwrap();
    assert_eq!(
        prompt["messages"][1]["content"],
        "Process this order: 2 widgets"
    );
    assert_eq!(prompt.as_object().unwrap().len(), 1);
    let completion: Value = serde_json::from_str(s(a, "gen_ai.completion")).unwrap();
    assert_eq!(completion["completion"], "Looking up the SKU.");
    assert_eq!(completion["reasoning"], "Need the SKU first.");
    assert_eq!(
        completion["tool_calls"][0]["function"]["name"],
        "lookup_sku"
    );
    let tools: Value = serde_json::from_str(s(a, "gen_ai.tool.definitions")).unwrap();
    assert_eq!(tools[0]["function"]["name"], "lookup_sku");
    // Status OK, no events.
    let st = span.status.as_ref().unwrap();
    assert_eq!((st.code, st.message.as_str()), (1, ""));
    assert!(span.events.is_empty());
    assert!(!has(a, "error.type"));
}

#[test]
fn operation_and_provider_names() {
    let attrs = |extra: Value| {
        let g = with(extra);
        let (_, req) = encode_with(&g, TraceOptions::default());
        spans(&req)[0].attributes.clone()
    };
    let a = attrs(json!({"api_type": "embeddings", "provider_name": "Google Vertex (Europe)"}));
    assert_eq!(s(&a, "gen_ai.operation.name"), "embeddings");
    assert_eq!(s(&a, "gen_ai.provider.name"), "gcp.vertex_ai");
    assert_eq!(s(&a, "openrouter.provider_name"), "Google Vertex (Europe)");
    let a = attrs(json!({"provider_name": "Amazon Bedrock"}));
    assert_eq!(s(&a, "gen_ai.operation.name"), "chat");
    assert_eq!(s(&a, "gen_ai.system"), "aws.bedrock");
    let a = attrs(json!({"provider_name": "Together AI"}));
    assert_eq!(s(&a, "gen_ai.provider.name"), "together_ai");
    // No provider: the model's author.
    let a = attrs(json!({}));
    assert_eq!(s(&a, "gen_ai.provider.name"), "openai");
    assert!(!has(&a, "openrouter.provider_name"));
    let g = generation(
        json!({"id": "g", "model": "meta-llama/llama-3", "created_at": "2026-01-01T00:00:00Z"}),
    );
    let (_, req) = encode_with(&g, TraceOptions::default());
    assert_eq!(
        s(&spans(&req)[0].attributes, "gen_ai.provider.name"),
        "meta_llama"
    );
    // max_completion_tokens stands in for max_tokens.
    let a = attrs(json!({"request": {"max_completion_tokens": 64}}));
    assert_eq!(i(&a, "gen_ai.request.max_tokens"), 64);
    assert_eq!(i(&a, "gen_ai.request.max_completion_tokens"), 64);
}

#[test]
fn custom_metadata_is_typed() {
    let g = generation(full_record());
    let (_, req) = encode_with(&g, TraceOptions::default());
    let a = &spans(&req)[1].attributes;
    assert_eq!(s(a, "trace.metadata.order_id"), "ORD-12345");
    assert_eq!(s(a, "trace.metadata.priority"), "high");
    assert_eq!(i(a, "trace.metadata.attempt"), 2);
    assert_eq!(d(a, "trace.metadata.score"), 0.75);
    assert!(b(a, "trace.metadata.vip"));
    assert_eq!(s(a, "trace.metadata.labels"), r#"["a","b"]"#);
    assert_eq!(s(a, "trace.metadata.customer"), r#"{"tier":"gold"}"#);
    assert!(!has(a, "trace.metadata.nothing"), "null is skipped");
    // Reserved keys shape the hierarchy and are not metadata.
    for reserved in [
        "trace_id",
        "trace_name",
        "span_name",
        "generation_name",
        "parent_span_id",
    ] {
        assert!(!has(a, &format!("trace.metadata.{reserved}")), "{reserved}");
    }
    // Integers beyond i64 keep their digits.
    let g = with(json!({"trace": {"big": 18446744073709551615u64, "neg": -5}}));
    let (_, req) = encode_with(&g, TraceOptions::default());
    let a = &spans(&req)[0].attributes;
    assert_eq!(s(a, "trace.metadata.big"), "18446744073709551615");
    assert_eq!(i(a, "trace.metadata.neg"), -5);
}

#[test]
fn privacy_mode_removes_all_content() {
    let g = generation(secret_record());
    let (open_body, _) = encode_with(&g, TraceOptions::default());
    let open = String::from_utf8(open_body).unwrap();
    for marker in [
        "SECRET-PROMPT",
        "SECRET-ANSWER",
        "SECRET-THOUGHT",
        "SECRET-ARG",
        "SECRET-TOOLDOC",
    ] {
        assert!(
            open.contains(marker),
            "{marker} missing without privacy mode"
        );
    }

    let private_opts = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let (body, req) = encode_with(&g, private_opts);
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains("SECRET"), "content leaked: {text}");
    let a = &spans(&req)[0].attributes;
    for key in [
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.tool.definitions",
    ] {
        assert!(!has(a, key), "{key} in privacy mode");
    }
    // Everything else is still there.
    assert_eq!(i(a, "gen_ai.usage.total_tokens"), 7);
    assert_eq!(d(a, "gen_ai.usage.cost"), 0.5);
    assert_eq!(d(a, "gen_ai.request.temperature"), 0.5);
    assert_eq!(s(a, "trace.metadata.env"), "prod");
    assert_eq!(s(a, "user.id"), "u-1");
    assert_eq!(strings(a, "openrouter.tool_call_names"), ["lookup"]);
    assert_eq!(s(a, "gen_ai.provider.name"), "anthropic");
}

#[test]
fn metadata_groups_only_when_enabled() {
    let g = generation(full_record());
    let group_keys: [(&str, &[&str]); 4] = [
        (
            "cost",
            &[
                "openrouter.upstream_inference_cost",
                "openrouter.cache_discount",
                "openrouter.is_byok",
                "openrouter.cost_details.prompt_cost",
                "openrouter.cost_details.completion_cost",
            ],
        ),
        (
            "identity",
            &["openrouter.api_key_hash", "openrouter.external_user"],
        ),
        (
            "request_context",
            &[
                "openrouter.http_referer",
                "openrouter.x_title",
                "openrouter.user_agent",
                "openrouter.origin",
                "openrouter.request_id",
                "openrouter.upstream_id",
                "openrouter.router",
                "openrouter.preset_id",
                "openrouter.data_region",
            ],
        ),
        (
            "cost_allocation",
            &[
                "openrouter.cost_allocation.prompt.tokens",
                "openrouter.cost_allocation.prompt.cost",
                "openrouter.cost_allocation.completion.tokens",
                "openrouter.cost_allocation.completion.cost",
            ],
        ),
    ];
    let attrs = |opts: TraceOptions| {
        let (_, req) = encode_with(&g, opts);
        spans(&req)[1].attributes.clone()
    };
    let none = attrs(TraceOptions::default());
    assert!(
        !none.iter().any(|kv| [
            "openrouter.upstream",
            "openrouter.cache_discount",
            "openrouter.is_byok",
            "openrouter.cost_",
            "openrouter.api_key",
            "openrouter.workspace",
            "openrouter.external_user",
            "openrouter.http_referer",
            "openrouter.data_region",
            "openrouter.router",
        ]
        .iter()
        .any(|p| kv.key.starts_with(p))),
        "a group leaked with every group off"
    );
    for (group, keys) in group_keys {
        let opts = TraceOptions {
            cost: group == "cost",
            identity: group == "identity",
            request_context: group == "request_context",
            cost_allocation: group == "cost_allocation",
            privacy_mode: false,
        };
        let a = attrs(opts);
        for key in keys {
            assert!(has(&a, key), "{group}: {key} missing");
        }
        for (other, other_keys) in group_keys {
            if other != group {
                for key in other_keys {
                    assert!(!has(&a, key), "{group} on: {key} of {other} present");
                }
            }
        }
    }
    let a = attrs(ALL_GROUPS);
    assert_eq!(d(&a, "openrouter.upstream_inference_cost"), 0.0011);
    assert!(!b(&a, "openrouter.is_byok"));
    assert_eq!(d(&a, "openrouter.cost_details.prompt_cost"), 0.00083);
    assert_eq!(
        s(&a, "openrouter.api_key_hash"),
        "f01d52606dc8f0a8303a7b5cc3fa07109c2e346cec7c0a16b40de462992ce943"
    );
    assert_eq!(s(&a, "openrouter.external_user"), "ext-42");
    assert!(
        !has(&a, "openrouter.workspace_id"),
        "empty workspace is not sent"
    );
    assert_eq!(s(&a, "openrouter.data_region"), "europe");
    assert_eq!(i(&a, "openrouter.cost_allocation.prompt.tokens"), 120);
    assert_eq!(d(&a, "openrouter.cost_allocation.completion.cost"), 0.0004);
}

#[test]
fn errors_set_status_and_exception_event() {
    let g = with(
        json!({"error": {"code": 429, "message": "Rate limited upstream"}, "trace": {"span_name": "Step"}}),
    );
    let (_, req) = encode_with(&g, TraceOptions::default());
    let sp = spans(&req);
    let generation_span = sp[1];
    let st = generation_span.status.as_ref().unwrap();
    assert_eq!(st.code, 2, "ERROR");
    assert_eq!(st.message, "Rate limited upstream");
    assert_eq!(
        sp[0].status.as_ref().unwrap().code,
        2,
        "mirrored on the parent"
    );
    assert!(sp[0].events.is_empty());
    assert_eq!(s(&generation_span.attributes, "error.type"), "429");
    assert_eq!(generation_span.events.len(), 1);
    let ev = &generation_span.events[0];
    assert_eq!(ev.name, "exception");
    assert_eq!(ev.time_unix_nano, generation_span.end_time_unix_nano);
    assert_eq!(
        s(&ev.attributes, "exception.message"),
        "Rate limited upstream"
    );
    assert_eq!(s(&ev.attributes, "exception.type"), "429");

    let g = with(json!({"error": {"message": "boom"}}));
    let (_, req) = encode_with(&g, TraceOptions::default());
    assert_eq!(s(&spans(&req)[0].attributes, "error.type"), "_OTHER");
}

#[test]
fn batches_keep_order_and_count() {
    let gens: Vec<Generation> = (0..5)
        .map(|n| {
            generation(json!({"id": format!("gen-{n}"), "model": "m", "created_at": "2026-01-01T00:00:00Z"}))
        })
        .collect();
    let views: Vec<TraceView<'_>> = gens
        .iter()
        .map(|g| TraceView::new(g, TraceOptions::default()))
        .collect();
    let payload = otlp::encode(&views, &DefaultDialect, OtlpEncoding::Json).unwrap();
    assert_eq!(payload.items, 5);
    let req = decode(&payload.body);
    assert_eq!(req.resource_spans.len(), 5);
    for (n, rs) in req.resource_spans.iter().enumerate() {
        let res = &rs.resource.as_ref().unwrap().attributes;
        assert_eq!(s(res, "openrouter.trace.id"), format!("gen-{n}"));
    }
}

#[test]
fn protobuf_encoding_decodes_to_the_same_message() {
    let g = generation(full_record());
    let view = TraceView::new(&g, ALL_GROUPS);
    let payload = otlp::encode(&[view], &DefaultDialect, OtlpEncoding::Protobuf).unwrap();
    assert_eq!(payload.content_type, "application/x-protobuf");
    let decoded: ExportTraceServiceRequest =
        prost::Message::decode(&payload.body[..]).expect("valid protobuf");
    assert_eq!(decoded, otlp::export_request(&[view], &DefaultDialect));
    let (_, from_json) = encode_with(&g, ALL_GROUPS);
    assert_eq!(decoded, from_json);
}

#[test]
fn encoding_is_deterministic() {
    let g = generation(full_record());
    let a = encode_with(&g, ALL_GROUPS).0;
    let b = encode_with(&g, ALL_GROUPS).0;
    assert_eq!(a, b);
}

#[test]
fn odd_inputs_encode_without_panicking() {
    let records = [
        json!({"id": "x", "model": " m ", "created_at": "1970-01-01T00:00:00Z"}),
        json!({"id": "ü/\"\\\u{0}", "model": "ß", "created_at": "2262-04-11T23:47:16.854775807Z", "latency": 1e300, "provider_name": "()", "api_type": "", "trace": {"": "", "k": {"deep": [[[[null]]]]}, "f": 1e308}}),
        json!({"id": "y", "model": "m", "created_at": "2026-01-01T00:00:00Z", "usage": {"prompt_tokens": 18446744073709551615u64, "completion_tokens": 1, "total_tokens": 5}, "request": {"messages": "not an array", "temperature": "hot", "n": "two", "stop": 5}, "response": {"choices": "nope"}}),
        json!({"id": "z", "model": "m", "created_at": "2026-01-01T00:00:00+14:00", "error": {"code": {"nested": true}, "message": ""}, "trace": {"parent_span_id": "0000000000000000", "trace_id": "00000000000000000000000000000000"}}),
    ];
    for r in records {
        let g = generation(r);
        for opts in [TraceOptions::default(), ALL_GROUPS] {
            let view = TraceView::new(&g, opts);
            for enc in [OtlpEncoding::Json, OtlpEncoding::Protobuf] {
                let p = otlp::encode(&[view], &DefaultDialect, enc).unwrap();
                assert!(!p.body.is_empty());
            }
            let (_, req) = encode_with(&g, opts);
            for span in spans(&req) {
                assert_eq!(span.trace_id.len(), 16);
                assert_eq!(span.span_id.len(), 8);
                assert!(span.trace_id.iter().any(|b| *b != 0), "all-zero trace id");
                assert!(span.span_id.iter().any(|b| *b != 0), "all-zero span id");
                // An all-zero parent is OTLP's "no parent": never sent, as is or hashed.
                assert!(
                    span.parent_span_id.is_empty()
                        || (g.id != "z" && span.parent_span_id.iter().any(|b| *b != 0)),
                    "{}: parent {:?}",
                    g.id,
                    span.parent_span_id
                );
                assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
            }
        }
    }
}

/// A dialect that exercises every hook.
struct TestDialect;

impl OtlpDialect for TestDialect {
    fn service_name(&self) -> Cow<'static, str> {
        Cow::Borrowed("svc")
    }

    fn scope_name(&self) -> Cow<'static, str> {
        Cow::Borrowed("test-scope")
    }

    fn scope_version(&self) -> Cow<'static, str> {
        Cow::Owned(format!("{}.{}", 9, 9))
    }

    fn span_name<'a>(&self, view: &TraceView<'a>, slot: SpanSlot) -> Cow<'a, str> {
        match slot.role {
            SpanRole::Generation => Cow::Owned(format!("chat {}", view.model())),
            SpanRole::Intermediate => otlp::default_span_name(view, slot),
        }
    }

    fn attribute_key(&self, element: Element, key: &str) -> AttributeKey {
        match key {
            keys::GEN_AI_SYSTEM => AttributeKey::Drop,
            keys::USER_ID => AttributeKey::Rename(Cow::Borrowed("test.user")),
            keys::SERVICE_VERSION if element == Element::Resource => AttributeKey::Drop,
            _ => match key.strip_prefix(keys::TRACE_METADATA_PREFIX) {
                Some(name) => AttributeKey::Rename(Cow::Owned(format!("metadata.{name}"))),
                None => AttributeKey::Keep,
            },
        }
    }

    fn resource_attributes<'a>(&self, view: &TraceView<'a>, attrs: &mut Attributes<'a, '_>) {
        attrs.string("test.model_id", view.model());
    }

    fn span_attributes<'a>(
        &self,
        _view: &TraceView<'a>,
        slot: SpanSlot,
        attrs: &mut Attributes<'a, '_>,
    ) {
        let kind = match slot.role {
            SpanRole::Generation => "LLM",
            SpanRole::Intermediate => "CHAIN",
        };
        // Hook keys are verbatim even when they collide with a dropped standard key.
        attrs
            .string("test.kind", kind)
            .string(keys::GEN_AI_SYSTEM, "kept");
        attrs.remove(keys::GEN_AI_CONVERSATION_ID);
    }
}

#[test]
fn dialect_hooks_apply() {
    let g = generation(full_record());
    let view = TraceView::new(&g, TraceOptions::default());
    let payload = otlp::encode(&[view], &TestDialect, OtlpEncoding::Json).unwrap();
    let req = decode(&payload.body);
    let rs = &req.resource_spans[0];
    let res = &rs.resource.as_ref().unwrap().attributes;
    assert_eq!(s(res, "service.name"), "svc");
    assert!(!has(res, "service.version"));
    assert_eq!(s(res, "test.model_id"), "openai/gpt-4o");
    let scope = rs.scope_spans[0].scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("test-scope", "9.9")
    );
    let sp = spans(&req);
    assert_eq!(sp[0].name, "Extraction");
    assert_eq!(sp[1].name, "chat openai/gpt-4o");
    let a = &sp[1].attributes;
    assert_eq!(s(a, "test.kind"), "LLM");
    assert_eq!(s(&sp[0].attributes, "test.kind"), "CHAIN");
    assert_eq!(s(a, "gen_ai.system"), "kept");
    assert_eq!(s(a, "test.user"), "user_12345");
    assert!(!has(a, "user.id"));
    assert!(!has(a, "gen_ai.conversation.id"));
    assert_eq!(s(a, "metadata.order_id"), "ORD-12345");
    assert!(!has(a, "trace.metadata.order_id"));
    assert_eq!(s(&sp[0].attributes, "test.user"), "user_12345");
}

/// Times the encoding of 100,000 generations (the golden record, groups on). Run with
/// `cargo test --release -p tracecast-exporters --test otlp_encoding -- --ignored --nocapture`.
#[test]
#[ignore]
fn encoding_rate() {
    let full = generation(full_record());
    let private = generation(secret_record());
    for (label, g, opts, batch) in [
        (
            "full record, all groups, batches of 100",
            &full,
            ALL_GROUPS,
            100,
        ),
        (
            "full record, all groups, batches of 1",
            &full,
            ALL_GROUPS,
            1,
        ),
        (
            "full record, no groups, batches of 100",
            &full,
            TraceOptions::default(),
            100,
        ),
        (
            "small record, privacy mode, batches of 100",
            &private,
            TraceOptions {
                privacy_mode: true,
                ..Default::default()
            },
            100,
        ),
    ] {
        let views: Vec<TraceView<'_>> = (0..batch).map(|_| TraceView::new(g, opts)).collect();
        for enc in [OtlpEncoding::Json, OtlpEncoding::Protobuf] {
            let total = 100_000;
            let mut bytes = 0usize;
            let start = Instant::now();
            for _ in 0..total / batch {
                let p = otlp::encode(&views, &DefaultDialect, enc).unwrap();
                bytes += p.body.len();
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{label}, {enc:?}: {total} spans in {:.3} s = {:.0} generations/s/core, {:.2} µs each, {} bytes each",
                secs,
                total as f64 / secs,
                secs * 1e6 / total as f64,
                bytes / total
            );
        }
    }
}
